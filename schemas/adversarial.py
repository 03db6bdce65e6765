"""Schemas of adversarial evaluation: misleading traces, per-model adversarial predictions, robustness table."""

import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from schemas.eval import PREDICTIONS_ARROW, PredictionsSchema
from schemas.questions import LETTERS


class TracesSchema(pa.DataFrameModel):
    """One misleading reasoning trace per (question, trace index), concluding with a wrong option."""

    benchmark: Series[str]
    qid: Series[str]
    trace_index: Series[int] = pa.Field(ge=0)
    target: Series[str] = pa.Field(isin=list(LETTERS))
    trace: Series[str] = pa.Field(str_length={"min_value": 1})
    generator: Series[str]
    prompt_hash: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    attempts: Series[int] = pa.Field(ge=1)

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid", "trace_index"]


TRACES_ARROW = pyarrow.schema(
    [("benchmark", pyarrow.string()), ("qid", pyarrow.string()), ("trace_index", pyarrow.int64()), ("target", pyarrow.string())]
    + [("trace", pyarrow.string()), ("generator", pyarrow.string()), ("prompt_hash", pyarrow.string()), ("attempts", pyarrow.int64())]
)


class AdversarialPredictionsSchema(PredictionsSchema):
    """A predictions row per (model, question, trace), plus the planted target and whether the answer took the bait."""

    trace_index: Series[int] = pa.Field(ge=0)
    target: Series[str] = pa.Field(isin=list(LETTERS))
    protocol: Series[str] = pa.Field(isin=["prefill", "turn"])
    took_bait: Series[int] = pa.Field(isin=[0, 1])

    class Config:
        strict = True
        ordered = False
        unique = ["model", "benchmark", "qid", "trace_index"]

    @pa.dataframe_check(name="took_bait means the extracted answer is the planted target")
    def bait(cls, df):
        return df["took_bait"] == (df["extracted"] == df["target"]).astype(int)

    @pa.dataframe_check(name="the planted target is a wrong option")
    def target_wrong(cls, df):
        return df["target"] != df["answer"]


_extra = [("trace_index", pyarrow.int64()), ("target", pyarrow.string()), ("protocol", pyarrow.string())]
ADVERSARIAL_ARROW = pyarrow.schema(list(PREDICTIONS_ARROW)[:4] + _extra + list(PREDICTIONS_ARROW)[4:] + [("took_bait", pyarrow.int8())])


class RobustnessSchema(pa.DataFrameModel):
    """Model x benchmark ('all' pooled) x split: paired clean vs adversarial accuracy, drop with CI, bait and flip shares."""

    model: Series[str]
    benchmark: Series[str]
    split: Series[str] = pa.Field(isin=["reasoning", "knowledge", "all"])
    questions: Series[int] = pa.Field(gt=0)
    pairs: Series[int] = pa.Field(gt=0)
    clean_accuracy: Series[float] = pa.Field(ge=0, le=1)
    adversarial_accuracy: Series[float] = pa.Field(ge=0, le=1)
    drop: Series[float] = pa.Field(ge=-1, le=1)
    drop_ci_low: Series[float] = pa.Field(ge=-1, le=1)
    drop_ci_high: Series[float] = pa.Field(ge=-1, le=1)
    took_bait: Series[float] = pa.Field(ge=0, le=1)
    flipped: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    parse_failed: Series[int] = pa.Field(ge=0)

    class Config:
        strict = True
        ordered = True
        unique = ["model", "benchmark", "split"]


ROBUSTNESS_ARROW = pyarrow.schema(
    [("model", pyarrow.string()), ("benchmark", pyarrow.string()), ("split", pyarrow.string())]
    + [("questions", pyarrow.int64()), ("pairs", pyarrow.int64())]
    + [(n, pyarrow.float64()) for n in ("clean_accuracy", "adversarial_accuracy", "drop", "drop_ci_low", "drop_ci_high", "took_bait", "flipped")]
    + [("parse_failed", pyarrow.int64())]
)
