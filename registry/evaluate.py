"""Evaluation: pick the questions, ask a model (cached, resumable), grade the answers."""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from registry.backends import Completion
from registry.catalog import Model
from registry.errors import MedregError
from registry.generation import Generator
from registry.prompts import build_chat, extract_answer, follows_think_format, match_choice, prompt_hash


def _rank(seed: int, benchmark: str, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{benchmark}:{qid}".encode()).hexdigest()


def with_prompt(model: Model, style: str | None) -> Model:
    """The catalog model asked in prompt style `style` (evaluate.prompt; None keeps the catalog's)."""
    return model if style is None else model.model_copy(update={"chat": model.chat.model_copy(update={"prompt": style})})


def select_questions(questions: pd.DataFrame, labels: pd.DataFrame, benchmarks: str | list[str], limit: int | None, seed: int) -> pd.DataFrame:
    """Categorised questions of the chosen benchmarks, at most `limit` per benchmark in a seeded order.

    The order is fixed per question, so a larger limit keeps every question of a smaller one.
    A benchmark named in params but not ingested is refused (params are validated against the catalog, not the data).
    """
    df = questions.merge(labels[["benchmark", "qid", "category"]], on=["benchmark", "qid"], how="inner")
    if benchmarks != "all":
        missing = sorted(set(benchmarks) - set(questions["benchmark"]))
        if missing:
            raise MedregError(f"evaluate.questions.benchmarks: {', '.join(missing)} not in the ingested questions (see data/metrics/ingest.json)")
        df = df[df["benchmark"].isin(benchmarks)]
    df = df.assign(_rank=[_rank(seed, b, q) for b, q in zip(df["benchmark"], df["qid"], strict=True)])
    df = df.sort_values(["benchmark", "_rank"])
    if limit is not None:
        df = df.groupby("benchmark", sort=True).head(limit)
    return df.drop(columns="_rank").reset_index(drop=True)


def evaluate(generator: Generator, rows: pd.DataFrame) -> pd.DataFrame:
    """Ask every question in `rows`, grade the answers; one predictions row per question."""
    records = rows.to_dict("records")
    chats = [build_chat(r, generator.model.chat) for r in records]
    completions = generator.complete(chats, f"evaluate {generator.model.name}")
    return score(generator.model, generator.backend_name, records, [prompt_hash(c) for c in chats], completions)


def score(
    model: Model, backend_name: str, records: list[dict[str, Any]], hashes: list[str], completions: list[Completion], prefilled: bool = False
) -> pd.DataFrame:
    """Extract and grade each completion; unreadable ones are wrong and flagged. `prefilled`: the prompt opened the think block."""
    out = []
    for r, h, c in zip(records, hashes, completions, strict=True):
        ex = extract_answer(c.text, r["options"], r["answer_format"], model.chat.think)
        huatuo = match_choice(c.text, r["options"])
        out.append(
            {
                "model": model.name,
                "backend": backend_name,
                "benchmark": r["benchmark"],
                "qid": r["qid"],
                "category": r["category"],
                "answer": r["answer"],
                "prompt_hash": h,
                "completion": c.text,
                "extracted": ex.answer,
                "correct": ex.answer == r["answer"],
                "parse_failed": bool(ex.parse_failed),
                "extraction_rule": ex.rule,
                "huatuo_first": huatuo.first,  # HuatuoGPT-o1's matcher on the same completion (stats: the better of first, last)
                "huatuo_last": huatuo.last,
                "huatuo_rule": huatuo.rule,
                "think_format": bool(follows_think_format(c.text, r["options"], r["answer_format"], prefilled)),
                "tokens": c.tokens,
            }
        )
    return pd.DataFrame(out)
