"""Schemas of the training data: loaded rows, the selected SFT and RL sets, removed (contaminated) rows, RL traces."""

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from schemas.questions import OPTIONS
from schemas.vocab import LETTERS, AnswerFormat, Source, values

TRAIN_FORMATS = [*values(AnswerFormat), "free_text"]


class TrainingRowsSchema(pa.DataFrameModel):
    """One row per training example of a catalog dataset (registry/training.yaml), normalised like the questions."""

    dataset: Series[str] = pa.Field(str_matches=r"^[a-z0-9_]+$", description="Training dataset name from registry/training.yaml.")
    qid: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="Example id, unique within its dataset (upstream id, else the source row key)."
    )
    kind: Series[str] = pa.Field(
        isin=["sft", "rl"], description="What the example is for: sft (with a written reasoning) or rl (a prompt with a gold option)."
    )
    question: Series[str] = pa.Field(str_length={"min_value": 1}, description="Question text, stripped and NFC-normalised.")
    context: Series[str] = pa.Field(nullable=True, description="Passage the question is asked about; null when none.")
    options: Series[object] = pa.Field(
        nullable=True,
        metadata={"arrow": OPTIONS},
        description="Answer options as letter -> text (a MAP in the database, a list of {letter, text} in parquet); null for free-text examples.",
    )
    n_options: Series[int] = pa.Field(ge=0, le=len(LETTERS), description="Number of answer options (0 for free-text examples).")
    answer: Series[str] = pa.Field(nullable=True, isin=list(LETTERS), description="Gold option letter; null for free-text examples.")
    answer_format: Series[str] = pa.Field(
        isin=TRAIN_FORMATS, description="How the answer is given: letter, yes_no_maybe (A yes, B no, C maybe) or free_text (no options)."
    )
    reasoning: Series[str] = pa.Field(
        nullable=True, description="The example's written chain of thought (SFT target); null for RL prompts without one."
    )
    response: Series[str] = pa.Field(nullable=True, description="The example's final answer as text; null when the source has none.")
    meta: Series[str] = pa.Field(
        nullable=True, description="Extra upstream fields kept as a JSON object (fields.meta in the catalog); null when none."
    )
    source: Series[str] = pa.Field(isin=values(Source), description="Where the example was read: demo, mirror or hub (train_data.source).")
    source_file: Series[str] = pa.Field(description="File (or Hub dataset) the row was read from.")
    source_row: Series[str] = pa.Field(description="Key of the row in its source: line number, JSON object key or list index.")

    class Config:
        strict = True
        unique = ["dataset", "qid"]

    @pa.dataframe_check(error="answer is one of the option letters")
    def answer_in_options(cls, df: pd.DataFrame) -> Series[bool]:
        """Free-text rows have neither options nor an answer letter."""
        rows = zip(df["answer_format"], df["answer"], df["options"], strict=True)
        return pd.Series([(o is None and pd.isna(a)) if f == "free_text" else isinstance(o, dict) and a in o for f, a, o in rows], index=df.index)

    @pa.dataframe_check(error="sft rows have reasoning")
    def sft_reasoning(cls, df: pd.DataFrame) -> Series[bool]:
        return (df["kind"] != "sft") | df["reasoning"].notna()


class SelectedSchema(TrainingRowsSchema):
    """A kept training row, with its probability of being reasoning-heavy from the registry's classifier."""

    p_reasoning: Series[float] = pa.Field(
        ge=0, le=1, description="The registry classifier's calibrated probability that the question is reasoning-heavy."
    )


class ContaminatedSchema(pa.DataFrameModel):
    """A training row removed because it overlaps an ingested evaluation question, with the match and the evidence."""

    dataset: Series[str] = pa.Field(description="Training dataset the removed row came from (registry/training.yaml).")
    qid: Series[str] = pa.Field(description="Id of the removed training example, unique within its dataset.")
    kind: Series[str] = pa.Field(isin=["sft", "rl"], description="What the example was for: sft or rl.")
    question: Series[str] = pa.Field(description="The removed training example's question text.")
    benchmark: Series[str] = pa.Field(description="Benchmark of the evaluation question it overlaps.")
    benchmark_qid: Series[str] = pa.Field(description="Question id (qid) of the evaluation question it overlaps.")
    reason: Series[str] = pa.Field(
        isin=["ngram", "near_duplicate"],
        description="Why it was removed: ngram (shares word n-grams) or near_duplicate (fuzzy-matched question text).",
    )
    evidence: Series[str] = pa.Field(description="The shared n-grams (count and an example), or the matched evaluation question's text.")
    score: Series[float] = pa.Field(ge=0, le=100, description="rapidfuzz ratio of the two question texts (0-100; 100 = identical).")

    class Config:
        strict = True
        unique = ["dataset", "qid"]


class TrainTracesSchema(pa.DataFrameModel):
    """A misleading trace toward a wrong option for an RL training question (adversarial GRPO prompts)."""

    dataset: Series[str] = pa.Field(description="Training dataset of the RL prompt (registry/training.yaml).")
    qid: Series[str] = pa.Field(description="Id of the RL prompt, unique within its dataset.")
    trace_index: Series[int] = pa.Field(ge=0, description="0-based index of the trace among the prompt's traces.")
    target: Series[str] = pa.Field(isin=list(LETTERS), description="The wrong option letter the trace argues for and concludes with.")
    trace: Series[str] = pa.Field(str_length={"min_value": 1}, description="The misleading step-by-step reasoning text.")
    generator: Series[str] = pa.Field(description="Catalog name of the model that wrote the trace.")
    prompt_hash: Series[str] = pa.Field(
        str_matches=r"^[0-9a-f]{16}$", description="First 16 hex digits of the SHA-256 of the exact chat messages that asked for the trace."
    )
    attempts: Series[int] = pa.Field(ge=1, description="Generations needed until the trace concluded with its target (1 = first try).")

    class Config:
        strict = True
        unique = ["dataset", "qid", "trace_index"]
