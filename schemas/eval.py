"""Schemas of evaluation outputs: per-model predictions, the summary table, the knowledge-vs-reasoning gaps, the study's numbers."""

import pandera.pandas as pa
from pandera.typing import Series

from schemas.vocab import LETTERS, Backend, Category, values


class PredictionsSchema(pa.DataFrameModel):
    """One graded answer per model x question (benchmark, qid): the completion, the extracted answer and its grade."""

    model: Series[str] = pa.Field(description="Catalog name of the evaluated model (registry/models.yaml).")
    backend: Series[str] = pa.Field(
        isin=values(Backend), description="Inference backend that generated the completion: transformers, vllm or openai."
    )
    benchmark: Series[str] = pa.Field(description="Benchmark the question belongs to (registry/benchmarks.yaml name).")
    qid: Series[str] = pa.Field(description="Question id, unique within its benchmark.")
    category: Series[str] = pa.Field(
        isin=values(Category),
        description="The question's category from the splits table: reasoning (reasoning-heavy) or knowledge (knowledge-heavy).",
    )
    answer: Series[str] = pa.Field(isin=list(LETTERS), description="Gold option letter (A, B, ...).")
    prompt_hash: Series[str] = pa.Field(
        str_matches=r"^[0-9a-f]{16}$", description="First 16 hex digits of the SHA-256 of the exact chat messages sent."
    )
    completion: Series[str] = pa.Field(description="The model's raw reply text, as generated.")
    extracted: Series[str] = pa.Field(
        nullable=True, isin=list(LETTERS), description="Option letter read from the completion by medreg's extraction; null when none could be read."
    )
    correct: Series[bool] = pa.Field(
        description="True when the extracted answer equals the gold answer (unreadable answers are false); avg(correct::int) is an accuracy."
    )
    parse_failed: Series[bool] = pa.Field(
        description="True when no single answer could be read from the completion (none, ambiguous or not an option)."
    )
    extraction_rule: Series[str] = pa.Field(
        description="Which extraction rule decided (answer tag, boxed, answer phrase, final line, ...), or why parsing failed."
    )
    huatuo_first: Series[str] = pa.Field(
        isin=list(LETTERS), description="First option letter matched by HuatuoGPT-o1's matcher on the same completion (it always picks one)."
    )
    huatuo_last: Series[str] = pa.Field(
        isin=list(LETTERS), description="Last option letter matched by HuatuoGPT-o1's matcher on the same completion."
    )
    huatuo_rule: Series[str] = pa.Field(
        isin=["answer phrase", "letter", "option text", "closest string"],
        description="How HuatuoGPT-o1's matcher chose: answer phrase, letter, option text, or closest string (a guess).",
    )
    think_format: Series[bool] = pa.Field(
        description="True when the reply follows the trained format: a think block closed once, then one parseable answer."
    )
    tokens: Series[int] = pa.Field(ge=0, description="Number of new tokens generated for the completion.")

    class Config:
        strict = True
        unique = ["model", "benchmark", "qid"]

    @pa.dataframe_check(error="correct means the extracted answer equals the gold answer")
    def graded(cls, df):
        return df["correct"] == (df["extracted"] == df["answer"])

    @pa.dataframe_check(error="parse_failed rows have no extracted answer")
    def flagged(cls, df):
        return ~(df["parse_failed"] & df["extracted"].notna())


class SummarySchema(pa.DataFrameModel):
    """Model x benchmark ('all' = pooled) x category ('all' = both) x scorer: accuracy with a 95% Wilson CI."""

    model: Series[str] = pa.Field(description="Catalog name of the evaluated model.")
    benchmark: Series[str] = pa.Field(description="Benchmark name, or 'all' for every evaluated benchmark pooled.")
    category: Series[str] = pa.Field(
        isin=[*values(Category), "all"], description="Question category: reasoning, knowledge, or 'all' for both pooled."
    )
    scorer: Series[str] = pa.Field(
        isin=["medreg", "huatuo"], description="Who graded: medreg (our extraction; unreadable answers are wrong) or huatuo (HuatuoGPT-o1's matcher)."
    )
    match: Series[str] = pa.Field(
        nullable=True,
        isin=["first", "last"],
        description="huatuo scorer: whether its first or last match scored better in this cell (the one reported); null for medreg.",
    )
    n: Series[int] = pa.Field(gt=0, description="Number of graded answers (questions) in the cell.")
    n_correct: Series[int] = pa.Field(ge=0, description="Number of correct answers in the cell (a count, 0..n).")
    accuracy: Series[float] = pa.Field(ge=0, le=1, description="Share of correct answers, n_correct / n (0-1).")
    ci_low: Series[float] = pa.Field(ge=0, le=1, description="Lower bound of the 95% Wilson score interval of the accuracy (0-1).")
    ci_high: Series[float] = pa.Field(ge=0, le=1, description="Upper bound of the 95% Wilson score interval of the accuracy (0-1).")
    parse_failures: Series[int] = pa.Field(
        ge=0, description="Number of answers that could not be read (medreg), or closest-string guesses of HuatuoGPT-o1's matcher (huatuo)."
    )
    think_format_share: Series[float] = pa.Field(
        ge=0, le=1, description="Share of answers in the trained format: a think block closed once, then one parseable answer (0-1)."
    )

    class Config:
        strict = True
        unique = ["model", "benchmark", "category", "scorer"]

    @pa.dataframe_check(error="ci_low <= accuracy <= ci_high")
    def ci_brackets(cls, df):
        return (df["ci_low"] <= df["accuracy"] + 1e-12) & (df["accuracy"] <= df["ci_high"] + 1e-12)


class GapsSchema(pa.DataFrameModel):
    """Per model: knowledge minus reasoning accuracy, bootstrap CI, Fisher and benchmark-stratified CMH p-values."""

    model: Series[str] = pa.Field(unique=True, description="Catalog name of the evaluated model.")
    n_knowledge: Series[int] = pa.Field(ge=0, description="Number of knowledge-heavy questions answered, over every evaluated benchmark.")
    n_reasoning: Series[int] = pa.Field(ge=0, description="Number of reasoning-heavy questions answered, over every evaluated benchmark.")
    knowledge_accuracy: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Accuracy on knowledge-heavy questions (0-1); null when either category has no question."
    )
    reasoning_accuracy: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Accuracy on reasoning-heavy questions (0-1); null when either category has no question."
    )
    gap: Series[float] = pa.Field(
        nullable=True,
        ge=-1,
        le=1,
        description="knowledge_accuracy minus reasoning_accuracy (-1 to 1); positive: reasoning-heavy questions are harder.",
    )
    gap_ci_low: Series[float] = pa.Field(
        nullable=True, description="Lower bound of the gap's 95% percentile bootstrap interval (evaluate.bootstrap)."
    )
    gap_ci_high: Series[float] = pa.Field(
        nullable=True, description="Upper bound of the gap's 95% percentile bootstrap interval (evaluate.bootstrap)."
    )
    p_fisher: Series[float] = pa.Field(
        nullable=True, ge=0, le=1, description="Two-sided Fisher exact test p-value of correct vs category (pooled 2x2 table)."
    )
    p_cmh: Series[float] = pa.Field(
        nullable=True,
        ge=0,
        le=1,
        description="Cochran-Mantel-Haenszel test p-value (continuity-corrected) of correct vs category, stratified by benchmark.",
    )

    class Config:
        strict = True


class StudyReferencesSchema(pa.DataFrameModel):
    """The study's published numbers (registry/references.yaml), to set beside `summary` and `robustness`."""

    model: Series[str] = pa.Field(
        nullable=True, description="This catalog's name of the model the number is about; null for numbers about the questions."
    )
    study_model: Series[str] = pa.Field(nullable=True, description="The model's name as the study reports it; null for numbers about the questions.")
    measure: Series[str] = pa.Field(
        isin=["accuracy", "reasoning_share", "classifier_agreement"],
        description="What was measured: accuracy, reasoning_share (share of reasoning-heavy questions) or classifier_agreement.",
    )
    benchmark: Series[str] = pa.Field(description="Benchmark name, or 'all' for the study's pooled number.")
    category: Series[str] = pa.Field(isin=[*values(Category), "all"], description="Question category the number covers: reasoning, knowledge or all.")
    setting: Series[str] = pa.Field(
        nullable=True,
        isin=["clean", "adversarial"],
        description="Accuracy only: clean or adversarial (after a misleading trace); null for other measures.",
    )
    value: Series[float] = pa.Field(ge=0, le=1, description="The published number as a proportion (0-1).")
    paper_version: Series[str] = pa.Field(isin=["v1", "v2"], description="arXiv version of the paper the number is from: v1 or v2.")
    source: Series[str] = pa.Field(description="Where the number is printed: paper version, section, table or figure, with its wording.")

    class Config:
        strict = True
        unique = ["model", "measure", "benchmark", "category", "setting", "paper_version"]
