"""Schemas of adversarial evaluation: misleading traces, per-model adversarial predictions, robustness table."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.eval import PredictionsSchema
from schemas.vocab import LETTERS, Category, Protocol, values


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
        unique = ["benchmark", "qid", "trace_index"]


class AdversarialPredictionsSchema(PredictionsSchema):
    """A predictions row per (model, question, trace), plus the planted target and whether the answer took the bait."""

    trace_index: Series[int] = pa.Field(ge=0)
    target: Series[str] = pa.Field(isin=list(LETTERS))
    protocol: Series[str] = pa.Field(isin=values(Protocol))
    cue: Series[str]  # what followed the trace: the prefill cue, or the reconsider turn
    took_bait: Series[int] = pa.Field(isin=[0, 1])

    class Config:
        strict = True
        unique = ["model", "benchmark", "qid", "trace_index"]

    @pa.dataframe_check(name="took_bait means the extracted answer is the planted target")
    def bait(cls, df):
        return df["took_bait"] == (df["extracted"] == df["target"]).astype(int)

    @pa.dataframe_check(name="the planted target is a wrong option")
    def target_wrong(cls, df):
        return df["target"] != df["answer"]


class RobustnessSchema(pa.DataFrameModel):
    """Model x benchmark ('all' pooled) x category: paired clean vs adversarial accuracy, drop with CI, bait and flip shares."""

    model: Series[str]
    benchmark: Series[str]
    category: Series[str] = pa.Field(isin=[*values(Category), "all"])
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
        unique = ["model", "benchmark", "category"]
