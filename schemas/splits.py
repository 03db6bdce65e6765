"""Schemas of the reasoning/knowledge categories of every question (`data/splits/labels.parquet`) and the classifier's data split."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.questions import OPTIONS
from schemas.vocab import LETTERS, AnswerFormat, Category, DataSplit, values


class LabelsSchema(pa.DataFrameModel):
    """One row per ingested question, self-contained: the published reasoning/knowledge split.

    The question as asked, its gold answer, its category (reasoning or knowledge), the classifier's probability and
    where the category came from.
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
    category_source: Series[str] = pa.Field(isin=["classifier", "expert"])
    predicted_category: Series[str] = pa.Field(isin=values(Category))
    expert_category: Series[str] = pa.Field(nullable=True, isin=values(Category))
    threshold: Series[float] = pa.Field(ge=0, le=1)
    classifier_split: Series[str] = pa.Field(nullable=True, isin=values(DataSplit))

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


class ClassifierSplitSchema(pa.DataFrameModel):
    """Which expert-labeled questions the classifier trained, validated and was tested on."""

    benchmark: Series[str]
    qid: Series[str]
    split: Series[str] = pa.Field(isin=values(DataSplit))

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]
