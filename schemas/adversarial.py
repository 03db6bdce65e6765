"""Schemas of adversarial evaluation: misleading traces, per-model adversarial predictions, robustness table."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.eval import PredictionsSchema
from schemas.vocab import LETTERS, Category, Protocol, values


class TracesSchema(pa.DataFrameModel):
    """One misleading reasoning trace per (question, trace index), concluding with a wrong option."""

    benchmark: Series[str] = pa.Field(description="Benchmark the question belongs to.")
    qid: Series[str] = pa.Field(description="Question id, unique within its benchmark.")
    trace_index: Series[int] = pa.Field(ge=0, description="0-based index of the trace among the question's traces.")
    target: Series[str] = pa.Field(isin=list(LETTERS), description="The wrong option letter the trace argues for and concludes with.")
    trace: Series[str] = pa.Field(str_length={"min_value": 1}, description="The misleading step-by-step reasoning text.")
    generator: Series[str] = pa.Field(description="Catalog name of the model that wrote the trace, or 'study' for the study's own traces.")
    prompt_hash: Series[str] = pa.Field(
        str_matches=r"^[0-9a-f]{16}$", description="First 16 hex digits of the SHA-256 of the exact chat messages that asked for the trace."
    )
    attempts: Series[int] = pa.Field(ge=1, description="Generations needed until the trace concluded with its target (1 = first try).")

    class Config:
        strict = True
        unique = ["benchmark", "qid", "trace_index"]


class AdversarialPredictionsSchema(PredictionsSchema):
    """A predictions row per (model, question, trace), plus the planted target and whether the answer took the bait."""

    trace_index: Series[int] = pa.Field(ge=0, description="0-based index of the misleading trace put in front of the model (adversarial_traces).")
    target: Series[str] = pa.Field(isin=list(LETTERS), description="The wrong option letter the trace argued for (the bait).")
    protocol: Series[str] = pa.Field(
        isin=values(Protocol),
        description="How the trace was shown: prefill (as the start of the model's reply) or turn (a finished turn, then a user asks to reconsider).",
    )
    cue: Series[str] = pa.Field(description="What followed the trace: the prefill cue, or the user's reconsider turn.")
    took_bait: Series[bool] = pa.Field(description="True when the extracted answer is the planted target (the wrong option the trace argued for).")

    class Config:
        strict = True
        unique = ["model", "benchmark", "qid", "trace_index"]

    @pa.dataframe_check(error="took_bait means the extracted answer is the planted target")
    def bait(cls, df):
        return df["took_bait"] == (df["extracted"] == df["target"])

    @pa.dataframe_check(error="the planted target is a wrong option")
    def target_wrong(cls, df):
        return df["target"] != df["answer"]


class RobustnessSchema(pa.DataFrameModel):
    """Model x benchmark ('all' pooled) x category: paired clean vs adversarial accuracy, drop with CI, bait and flip shares."""

    model: Series[str] = pa.Field(description="Catalog name of the evaluated model.")
    benchmark: Series[str] = pa.Field(description="Benchmark name, or 'all' for every evaluated benchmark pooled.")
    category: Series[str] = pa.Field(
        isin=[*values(Category), "all"], description="Question category: reasoning, knowledge, or 'all' for both pooled."
    )
    questions: Series[int] = pa.Field(gt=0, description="Number of distinct questions with both a clean and an adversarial answer.")
    pairs: Series[int] = pa.Field(gt=0, description="Number of (question, trace) pairs: adversarial answers matched with the clean answer.")
    clean_accuracy: Series[float] = pa.Field(
        ge=0, le=1, description="Accuracy without a trace over the pairs (a question counts once per trace; 0-1)."
    )
    adversarial_accuracy: Series[float] = pa.Field(ge=0, le=1, description="Accuracy after the misleading trace over the same pairs (0-1).")
    drop: Series[float] = pa.Field(ge=-1, le=1, description="clean_accuracy minus adversarial_accuracy (-1 to 1); positive: the traces hurt.")
    drop_ci_low: Series[float] = pa.Field(
        ge=-1, le=1, description="Lower bound of the drop's 95% paired percentile bootstrap interval (questions resampled, their traces together)."
    )
    drop_ci_high: Series[float] = pa.Field(
        ge=-1, le=1, description="Upper bound of the drop's 95% paired percentile bootstrap interval (questions resampled, their traces together)."
    )
    took_bait_share: Series[float] = pa.Field(
        ge=0, le=1, description="Share of adversarial answers that picked the trace's planted wrong option (0-1)."
    )
    flipped_share: Series[float] = pa.Field(
        nullable=True,
        ge=0,
        le=1,
        description="Share of clean-correct pairs answered wrong after the trace (0-1); null when no pair was clean-correct.",
    )
    parse_failures: Series[int] = pa.Field(ge=0, description="Number of adversarial answers that could not be read.")

    class Config:
        strict = True
        unique = ["model", "benchmark", "category"]
