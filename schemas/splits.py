"""Schemas of the reasoning/knowledge categories of every question (`data/splits/labels.parquet`) and the classifier's data split."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.vocab import Category, DataSplit, values


class LabelsSchema(pa.DataFrameModel):
    """One row per ingested question: its category (reasoning or knowledge) and where the category came from."""

    benchmark: Series[str]
    qid: Series[str]
    p_reasoning: Series[float] = pa.Field(ge=0, le=1)
    predicted_category: Series[str] = pa.Field(isin=values(Category))
    expert_category: Series[str] = pa.Field(nullable=True, isin=values(Category))
    category: Series[str] = pa.Field(isin=values(Category))
    category_source: Series[str] = pa.Field(isin=["classifier", "expert"])
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
