"""Schemas of the training data: loaded rows, the selected SFT and RL sets, removed (contaminated) rows, RL traces."""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.questions import OPTIONS
from schemas.vocab import LETTERS, AnswerFormat, Source, values

TRAIN_FORMATS = [*values(AnswerFormat), "free_text"]


class TrainingRowsSchema(pa.DataFrameModel):
    """One row per training example of a catalog dataset (registry/training.yaml), normalised like the questions."""

    dataset: Series[str] = pa.Field(str_matches=r"^[a-z0-9_]+$")
    qid: Series[str] = pa.Field(str_length={"min_value": 1})
    kind: Series[str] = pa.Field(isin=["sft", "rl"])
    question: Series[str] = pa.Field(str_length={"min_value": 1})
    context: Series[str] = pa.Field(nullable=True)
    options: Series[object] = pa.Field(nullable=True, metadata={"arrow": OPTIONS})
    n_options: Series[int] = pa.Field(ge=0, le=len(LETTERS))
    answer: Series[str] = pa.Field(nullable=True, isin=list(LETTERS))
    answer_format: Series[str] = pa.Field(isin=TRAIN_FORMATS)
    reasoning: Series[str] = pa.Field(nullable=True)
    response: Series[str] = pa.Field(nullable=True)
    meta: Series[str] = pa.Field(nullable=True)
    source: Series[str] = pa.Field(isin=values(Source))
    source_file: Series[str]
    source_row: Series[str]

    class Config:
        strict = True
        unique = ["dataset", "qid"]

    @pa.dataframe_check(name="answer is one of the option letters")
    def answer_in_options(cls, df: pd.DataFrame) -> Series[bool]:
        """Free-text rows have neither options nor an answer letter."""
        rows = zip(df["answer_format"], df["answer"], df["options"], strict=True)
        return pd.Series([(o is None and pd.isna(a)) if f == "free_text" else isinstance(o, dict) and a in o for f, a, o in rows], index=df.index)

    @pa.dataframe_check(name="sft rows have reasoning")
    def sft_reasoning(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["kind"] != "sft") | df["reasoning"].notna()


class SelectedSchema(TrainingRowsSchema):
    """A kept training row, with its probability of being reasoning-heavy from the registry's classifier."""

    p_reasoning: Series[float] = pa.Field(ge=0, le=1)


class ContaminatedSchema(pa.DataFrameModel):
    """A training row removed because it overlaps an ingested evaluation question, with the match and the evidence."""

    dataset: Series[str]
    qid: Series[str]
    kind: Series[str] = pa.Field(isin=["sft", "rl"])
    question: Series[str]
    benchmark: Series[str]
    benchmark_qid: Series[str]
    reason: Series[str] = pa.Field(isin=["ngram", "near_duplicate"])
    evidence: Series[str]  # the shared n-gram, or the matched question
    score: Series[float] = pa.Field(ge=0, le=100)  # rapidfuzz ratio of the two question texts

    class Config:
        strict = True
        unique = ["dataset", "qid"]


class TrainTracesSchema(pa.DataFrameModel):
    """A misleading trace toward a wrong option for an RL training question (adversarial GRPO prompts)."""

    dataset: Series[str]
    qid: Series[str]
    trace_index: Series[int] = pa.Field(ge=0)
    target: Series[str] = pa.Field(isin=list(LETTERS))
    trace: Series[str] = pa.Field(str_length={"min_value": 1})
    generator: Series[str]
    prompt_hash: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    attempts: Series[int] = pa.Field(ge=1)

    class Config:
        strict = True
        unique = ["dataset", "qid", "trace_index"]
