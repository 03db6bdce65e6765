"""Schemas of the reasoning/knowledge labels (`data/splits/labels.parquet`) and the classifier's data split."""

import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

LABEL_VALUES = ["reasoning", "knowledge"]


class LabelsSchema(pa.DataFrameModel):
    """One row per ingested question: its reasoning/knowledge label and where the label came from."""

    benchmark: Series[str]
    qid: Series[str]
    p_reasoning: Series[float] = pa.Field(ge=0, le=1)
    predicted_label: Series[str] = pa.Field(isin=LABEL_VALUES)
    expert_label: Series[str] = pa.Field(nullable=True, isin=LABEL_VALUES)
    label: Series[str] = pa.Field(isin=LABEL_VALUES)
    label_source: Series[str] = pa.Field(isin=["classifier", "expert"])
    threshold: Series[float] = pa.Field(ge=0, le=1)
    classifier_split: Series[str] = pa.Field(nullable=True, isin=["train", "val", "test"])

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]


LABELS_ARROW = pyarrow.schema(
    [
        ("benchmark", pyarrow.string()),
        ("qid", pyarrow.string()),
        ("p_reasoning", pyarrow.float64()),
        ("predicted_label", pyarrow.string()),
        ("expert_label", pyarrow.string()),
        ("label", pyarrow.string()),
        ("label_source", pyarrow.string()),
        ("threshold", pyarrow.float64()),
        ("classifier_split", pyarrow.string()),
    ]
)


class ClassifierSplitSchema(pa.DataFrameModel):
    """Which expert-labeled questions the classifier trained, validated and was tested on."""

    benchmark: Series[str]
    qid: Series[str]
    split: Series[str] = pa.Field(isin=["train", "val", "test"])

    class Config:
        strict = True
        unique = ["benchmark", "qid"]


CLASSIFIER_SPLIT_ARROW = pyarrow.schema([(n, pyarrow.string()) for n in ("benchmark", "qid", "split")])
