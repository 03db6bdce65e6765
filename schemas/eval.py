"""Schemas of evaluation outputs: per-model predictions, the summary table, the knowledge-vs-reasoning gaps, the study's numbers."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.vocab import LETTERS, Backend, Category, values


class PredictionsSchema(pa.DataFrameModel):
    """One row per (model, benchmark, qid): the completion, the extracted answer and its grade."""

    model: Series[str]
    backend: Series[str] = pa.Field(isin=values(Backend))
    benchmark: Series[str]
    qid: Series[str]
    category: Series[str] = pa.Field(isin=values(Category))
    answer: Series[str] = pa.Field(isin=list(LETTERS))
    prompt_hash: Series[str] = pa.Field(str_matches=r"^[0-9a-f]{16}$")
    completion: Series[str]
    extracted: Series[str] = pa.Field(nullable=True, isin=list(LETTERS))
    correct: Series[int] = pa.Field(isin=[0, 1])  # 0/1, so avg(correct) is an accuracy in SQL
    parse_failed: Series[int] = pa.Field(isin=[0, 1])
    extraction_rule: Series[str]
    huatuo_first: Series[str] = pa.Field(isin=list(LETTERS))  # HuatuoGPT-o1's matcher: first and last option matched
    huatuo_last: Series[str] = pa.Field(isin=list(LETTERS))
    huatuo_rule: Series[str] = pa.Field(isin=["answer phrase", "letter", "option text", "closest string"])
    think_format: Series[int] = pa.Field(isin=[0, 1])  # a think block closed once, then one parseable answer
    tokens: Series[int] = pa.Field(ge=0)

    class Config:
        strict = True
        unique = ["model", "benchmark", "qid"]

    @pa.dataframe_check(name="correct means the extracted answer equals the gold answer")
    def graded(cls, df):
        return df["correct"] == (df["extracted"] == df["answer"]).astype(int)

    @pa.dataframe_check(name="parse_failed rows have no extracted answer")
    def flagged(cls, df):
        return ~((df["parse_failed"] == 1) & df["extracted"].notna())


class SummarySchema(pa.DataFrameModel):
    """Model x benchmark ('all' = pooled) x category ('all' = both) x scorer: accuracy with a 95% bootstrap CI."""

    model: Series[str]
    benchmark: Series[str]
    category: Series[str] = pa.Field(isin=[*values(Category), "all"])
    scorer: Series[str] = pa.Field(isin=["medreg", "huatuo"])  # ours | HuatuoGPT-o1's matcher, on the same completions
    match: Series[str] = pa.Field(nullable=True, isin=["first", "last"])  # huatuo: the better of its first and last matches
    n: Series[int] = pa.Field(gt=0)
    correct: Series[int] = pa.Field(ge=0)
    accuracy: Series[float] = pa.Field(ge=0, le=1)
    ci_low: Series[float] = pa.Field(ge=0, le=1)
    ci_high: Series[float] = pa.Field(ge=0, le=1)
    parse_failed: Series[int] = pa.Field(ge=0)
    think_format: Series[float] = pa.Field(ge=0, le=1)  # share of answers in the trained format

    class Config:
        strict = True
        unique = ["model", "benchmark", "category", "scorer"]

    @pa.dataframe_check(name="ci_low <= accuracy <= ci_high")
    def ci_brackets(cls, df):
        return (df["ci_low"] <= df["accuracy"] + 1e-12) & (df["accuracy"] <= df["ci_high"] + 1e-12)


class GapsSchema(pa.DataFrameModel):
    """Per model: knowledge minus reasoning accuracy, bootstrap CI, Fisher and benchmark-stratified CMH p-values."""

    model: Series[str] = pa.Field(unique=True)
    n_knowledge: Series[int] = pa.Field(ge=0)
    n_reasoning: Series[int] = pa.Field(ge=0)
    knowledge_accuracy: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    reasoning_accuracy: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    gap: Series[float] = pa.Field(nullable=True, ge=-1, le=1)
    gap_ci_low: Series[float] = pa.Field(nullable=True)
    gap_ci_high: Series[float] = pa.Field(nullable=True)
    p_fisher: Series[float] = pa.Field(nullable=True, ge=0, le=1)
    p_cmh: Series[float] = pa.Field(nullable=True, ge=0, le=1)

    class Config:
        strict = True


class StudyReferencesSchema(pa.DataFrameModel):
    """The study's published numbers (registry/references.yaml), to set beside `summary` and `robustness`."""

    model: Series[str] = pa.Field(nullable=True)
    study_model: Series[str] = pa.Field(nullable=True)
    measure: Series[str] = pa.Field(isin=["accuracy", "reasoning_share", "classifier_agreement"])
    benchmark: Series[str]
    category: Series[str] = pa.Field(isin=[*values(Category), "all"])
    setting: Series[str] = pa.Field(nullable=True, isin=["clean", "adversarial"])
    value: Series[float] = pa.Field(ge=0, le=1)
    paper_version: Series[str] = pa.Field(isin=["v1", "v2"])
    source: Series[str]

    class Config:
        strict = True
        unique = ["model", "measure", "benchmark", "category", "setting", "paper_version"]
