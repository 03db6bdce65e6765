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

    benchmark: Series[str] = pa.Field(description="Benchmark the question belongs to.")
    qid: Series[str] = pa.Field(description="Question id, unique within its benchmark.")
    question: Series[str] = pa.Field(description="Question text, as in the questions table.")
    context: Series[str] = pa.Field(nullable=True, description="Passage the question is asked about; null when none.")
    options: Series[object] = pa.Field(
        metadata={"arrow": OPTIONS},
        description="Answer options as letter -> text: a MAP in the database (options['A']), a list of {letter, text} in parquet.",
    )
    answer: Series[str] = pa.Field(isin=list(LETTERS), description="Gold option letter (A, B, ...).")
    answer_format: Series[str] = pa.Field(
        isin=values(AnswerFormat), description="How the answer is asked for: letter (lettered options) or yes_no_maybe (A yes, B no, C maybe)."
    )
    category: Series[str] = pa.Field(
        isin=values(Category),
        description="The question's category in the published split: reasoning (reasoning-heavy) or knowledge (knowledge-heavy).",
    )
    p_reasoning: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="Probability that the question is reasoning-heavy that the category came from (the classifier's calibrated one, or the study's).",
    )
    category_source: Series[str] = pa.Field(
        isin=["classifier", "expert", "study"],
        description="Where the category came from: classifier, expert (label.prefer_expert) or study (the collection's is_reasoning).",
    )
    predicted_category: Series[str] = pa.Field(
        isin=values(Category), description="The trained classifier's category for the question, whatever the category column took."
    )
    expert_category: Series[str] = pa.Field(
        nullable=True, isin=values(Category), description="Category from the benchmark's expert labels (reasoning or knowledge); null when unlabeled."
    )
    study_category: Series[str] = pa.Field(
        nullable=True, isin=values(Category), description="The study collection's own category (its is_reasoning); null where not ingested from it."
    )
    study_p_reasoning: Series[float] = pa.Field(
        nullable=True,
        ge=0,
        le=1,
        description="The study collection's probability that the question is reasoning-heavy (its reasoning_prob); null where absent.",
    )
    threshold: Series[float] = pa.Field(ge=0, le=1, description="Probability threshold at or above which p_reasoning means reasoning.")
    fold: Series[pd.Int64Dtype] = pa.Field(
        nullable=True,
        ge=1,
        description="1-based cross-validation fold of an expert-labeled question (classifier_split); null for unlabeled questions.",
    )

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


class ClassifierSplitSchema(pa.DataFrameModel):
    """The cross-validation fold of every expert-labeled question and the chosen model's out-of-fold P(reasoning)."""

    benchmark: Series[str] = pa.Field(description="Benchmark the expert-labeled question belongs to.")
    qid: Series[str] = pa.Field(description="Question id, unique within its benchmark.")
    fold: Series[int] = pa.Field(ge=1, description="1-based cross-validation fold the question was held out in (classifier.cv).")
    p_reasoning_oof: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="The chosen model's calibrated probability of reasoning-heavy, from a model that did not see the question (out of fold).",
    )

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


class ClassifierCvSchema(pa.DataFrameModel):
    """Every compared candidate's scores on every cross-validation fold (at its threshold, tuned out of fold)."""

    candidate: Series[str] = pa.Field(description="Name of the compared classifier candidate (params classifier.candidates), or 'ensemble'.")
    kind: Series[str] = pa.Field(
        isin=["finetune", "frozen", "tfidf", "features", "length", "ensemble"],
        description="Candidate kind: finetune (fine-tuned encoder), frozen (frozen encoder + a linear head), tfidf, features, length or ensemble.",
    )
    members: Series[str] = pa.Field(description="Comma-separated candidates whose probabilities are averaged (itself, for a single candidate).")
    selectable: Series[bool] = pa.Field(
        description="True when the candidate may be chosen as the labeling model (false: compared and reported only)."
    )
    chosen: Series[bool] = pa.Field(description="True for the candidate chosen as the labeling model.")
    fold: Series[int] = pa.Field(ge=1, description="1-based cross-validation fold scored in this row.")
    n: Series[int] = pa.Field(ge=1, description="Number of expert-labeled questions in the fold.")
    accuracy: Series[float] = pa.Field(ge=0, le=1, description="Share of the fold's questions whose category matches the expert label (0-1).")
    macro_f1: Series[float] = pa.Field(ge=0, le=1, description="Macro-averaged F1 over reasoning and knowledge on the fold (0-1).")
    roc_auc: Series[float] = pa.Field(ge=0, le=1, description="ROC AUC of the calibrated probability of reasoning-heavy on the fold (0-1).")
    knowledge_recall: Series[float] = pa.Field(ge=0, le=1, description="Share of the fold's knowledge-heavy questions classified as knowledge (0-1).")
    threshold: Series[float] = pa.Field(ge=0, le=1, description="The candidate's probability threshold for reasoning, tuned out of fold.")
    ece: Series[float] = pa.Field(
        ge=0,
        le=1,
        description="The candidate's expected calibration error over all folds, probabilities calibrated fold by fold (0-1; same in every fold).",
    )

    class Config:
        strict = True
        ordered = True
        unique = ["candidate", "fold"]
