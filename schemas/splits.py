"""Schemas of every question's reasoning/knowledge category (`data/splits/labels.parquet`) and the classifier's CV.

The cross-validation: each labeled question's fold, and every candidate's scores per fold.
"""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.questions import OPTIONS
from schemas.vocab import LETTERS, AnswerFormat, Category, values


class LabelsSchema(pa.DataFrameModel):
    """One row per ingested question, self-contained: the published reasoning/knowledge split.

    The question as asked, its gold answer, its category (reasoning or knowledge), the probability and threshold that
    category came from (the classifier's, or the study collection's with label.source study) and where it came from.
    """

    benchmark: Series[str]
    qid: Series[str]
    question: Series[str]
    context: Series[str] = pa.Field(nullable=True)
    options: Series[object] = pa.Field(metadata={"arrow": OPTIONS})
    answer: Series[str] = pa.Field(isin=list(LETTERS))
    answer_format: Series[str] = pa.Field(isin=values(AnswerFormat))
    category: Series[str] = pa.Field(isin=values(Category))
    p_reasoning: Series[float] = pa.Field(ge=0, le=1)
    category_source: Series[str] = pa.Field(isin=["classifier", "expert", "study"])  # study: the collection's is_reasoning
    predicted_category: Series[str] = pa.Field(isin=values(Category))
    expert_category: Series[str] = pa.Field(nullable=True, isin=values(Category))
    study_category: Series[str] = pa.Field(nullable=True, isin=values(Category))  # the study's own label (is_reasoning), where ingested
    study_p_reasoning: Series[float] = pa.Field(nullable=True, ge=0, le=1)  # the study's reasoning_prob
    threshold: Series[float] = pa.Field(ge=0, le=1)
    cv_fold: Series[pd.Int64Dtype] = pa.Field(nullable=True, ge=1)  # expert-labeled rows: their cross-validation fold

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


class ClassifierSplitSchema(pa.DataFrameModel):
    """The cross-validation fold of every expert-labeled question and the chosen model's out-of-fold P(reasoning)."""

    benchmark: Series[str]
    qid: Series[str]
    fold: Series[int] = pa.Field(ge=1)
    p_reasoning_oof: Series[float] = pa.Field(ge=0, le=1)  # calibrated, from a model that did not see the question

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


class ClassifierCvSchema(pa.DataFrameModel):
    """Every compared candidate's scores on every cross-validation fold (at its threshold, tuned out of fold)."""

    candidate: Series[str]
    kind: Series[str] = pa.Field(isin=["finetune", "frozen", "tfidf", "features", "length", "ensemble"])
    members: Series[str]  # the candidates whose probabilities are averaged (itself, for a single candidate)
    selectable: Series[bool]
    chosen: Series[bool]
    fold: Series[int] = pa.Field(ge=1)
    n: Series[int] = pa.Field(ge=1)
    accuracy: Series[float] = pa.Field(ge=0, le=1)
    macro_f1: Series[float] = pa.Field(ge=0, le=1)
    roc_auc: Series[float] = pa.Field(ge=0, le=1)
    knowledge_recall: Series[float] = pa.Field(ge=0, le=1)
    threshold: Series[float] = pa.Field(ge=0, le=1)
    ece: Series[float] = pa.Field(ge=0, le=1)

    class Config:
        strict = True
        ordered = True
        unique = ["candidate", "fold"]
