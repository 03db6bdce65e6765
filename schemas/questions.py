"""Schema of the normalised questions table (`data/raw/questions.parquet`)."""

import unicodedata

import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

from schemas.vocab import LETTERS, AnswerFormat, Category, Source, values

# Options are stored as an ordered list of {letter, text} structs: Hugging Face `datasets`, pandas and DuckDB all
# read it (a parquet MAP has no `datasets` type). In memory they are a letter -> text dict; the results database
# exposes them as a MAP, so `options['A']` works in SQL.
OPTIONS = pyarrow.list_(pyarrow.struct([("letter", pyarrow.string()), ("text", pyarrow.string())]))


def _is_clean(text: object) -> bool:
    """True when text is a non-empty str that is stripped and NFC-normalised."""
    return isinstance(text, str) and text != "" and text == text.strip() and unicodedata.is_normalized("NFC", text)


class QuestionsSchema(pa.DataFrameModel):
    """One row per question across all benchmarks."""

    benchmark: Series[str] = pa.Field(
        str_matches=r"^[a-z0-9_]+$", description="Benchmark name from registry/benchmarks.yaml (lowercase letters, digits, _)."
    )
    qid: Series[str] = pa.Field(
        str_length={"min_value": 1}, description="Question id, unique within its benchmark (upstream id, else the source row key)."
    )
    question: Series[str] = pa.Field(description="Question text, stripped and NFC-normalised.")
    context: Series[str] = pa.Field(nullable=True, description="Passage the question is asked about (e.g. a PubMedQA abstract); null when none.")
    options: Series[object] = pa.Field(
        metadata={"arrow": OPTIONS},
        description="Answer options as letter -> text: a MAP in the database (options['A']), a list of {letter, text} in parquet.",
    )
    n_options: Series[int] = pa.Field(ge=2, le=len(LETTERS), description="Number of answer options.")
    answer: Series[str] = pa.Field(isin=list(LETTERS), description="Gold option letter (A, B, ...).")
    answer_format: Series[str] = pa.Field(
        isin=values(AnswerFormat), description="How the answer is asked for: letter (lettered options) or yes_no_maybe (A yes, B no, C maybe)."
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
    meta: Series[str] = pa.Field(
        nullable=True, description="Extra upstream fields kept as a JSON object (fields.meta in the catalog); null when none."
    )
    source: Series[str] = pa.Field(isin=values(Source), description="Where ingest read the question: demo, mirror or hub (ingest.source).")
    source_file: Series[str] = pa.Field(description="File (or Hub dataset) the row was read from, as ingest displays it.")
    source_row: Series[str] = pa.Field(description="Key of the row in its source: line number, JSON object key or list index.")

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]

    @pa.check("question", error="non-empty, stripped, NFC text")
    def question_clean(cls, s: Series[str]) -> Series[bool]:
        return s.map(_is_clean)

    @pa.check("context", error="stripped, NFC text")
    def context_clean(cls, s: Series[str]) -> Series[bool]:
        return s.map(lambda t: t is None or pd.isna(t) or _is_clean(t))

    @pa.check("options", error="letter->text mapping: keys single letters A-Z, texts stripped and NFC")
    def options_clean(cls, s: Series[object]) -> Series[bool]:
        def ok(opts: object) -> bool:
            return isinstance(opts, dict) and all(
                isinstance(k, str) and len(k) == 1 and k in LETTERS and isinstance(v, str) and (v == "" or _is_clean(v)) for k, v in opts.items()
            )

        return s.map(ok)

    @pa.dataframe_check(error="n_options equals the number of options")
    def n_options_matches(cls, df: pd.DataFrame) -> Series[bool]:
        return df["options"].map(lambda o: len(o) if isinstance(o, dict) else -1) == df["n_options"]

    @pa.dataframe_check(error="answer is one of the option letters")
    def answer_in_options(cls, df: pd.DataFrame) -> Series[bool]:
        pairs = zip(df["answer"], df["options"], strict=True)
        return pd.Series([isinstance(o, dict) and a in o for a, o in pairs], index=df.index)
