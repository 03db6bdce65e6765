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

    benchmark: Series[str] = pa.Field(str_matches=r"^[a-z0-9_]+$")
    qid: Series[str] = pa.Field(str_length={"min_value": 1})
    question: Series[str]
    context: Series[str] = pa.Field(nullable=True)
    options: Series[object] = pa.Field(metadata={"arrow": OPTIONS})
    n_options: Series[int] = pa.Field(ge=2, le=len(LETTERS))
    answer: Series[str] = pa.Field(isin=list(LETTERS))
    answer_format: Series[str] = pa.Field(isin=values(AnswerFormat))
    expert_category: Series[str] = pa.Field(nullable=True, isin=values(Category))
    study_category: Series[str] = pa.Field(nullable=True, isin=values(Category))  # the study collection's is_reasoning
    study_p_reasoning: Series[float] = pa.Field(nullable=True, ge=0, le=1)  # the study collection's reasoning_prob
    meta: Series[str] = pa.Field(nullable=True)
    source: Series[str] = pa.Field(isin=values(Source))
    source_file: Series[str]
    source_row: Series[str]

    class Config:
        strict = True
        ordered = True
        unique = ["benchmark", "qid"]

    @pa.check("question", name="non-empty, stripped, NFC text")
    def question_clean(cls, s: Series[str]) -> Series[bool]:
        return s.map(_is_clean)

    @pa.check("context", name="stripped, NFC text")
    def context_clean(cls, s: Series[str]) -> Series[bool]:
        return s.map(lambda t: t is None or pd.isna(t) or _is_clean(t))

    @pa.check("options", name="letter->text mapping: keys single letters A-Z, texts stripped and NFC")
    def options_clean(cls, s: Series[object]) -> Series[bool]:
        def ok(opts: object) -> bool:
            return isinstance(opts, dict) and all(
                isinstance(k, str) and len(k) == 1 and k in LETTERS and isinstance(v, str) and (v == "" or _is_clean(v)) for k, v in opts.items()
            )

        return s.map(ok)

    @pa.dataframe_check(name="n_options equals the number of options")
    def n_options_matches(cls, df: pd.DataFrame) -> Series[bool]:
        return df["options"].map(lambda o: len(o) if isinstance(o, dict) else -1) == df["n_options"]

    @pa.dataframe_check(name="answer is one of the option letters")
    def answer_in_options(cls, df: pd.DataFrame) -> Series[bool]:
        pairs = zip(df["answer"], df["options"], strict=True)
        return pd.Series([isinstance(o, dict) and a in o for a, o in pairs], index=df.index)
