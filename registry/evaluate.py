"""Evaluation: pick questions, generate with a cached, resumable loop, score; summarise with bootstrap CIs and tests."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from tqdm import tqdm

from registry.backends import Backend, Chat, Completion, Generation
from registry.prompts import build_chat, extract_answer, prompt_hash

SPLITS = ("reasoning", "knowledge")


def generation_settings(model: dict[str, Any], overrides: dict[str, Any] | None) -> Generation:
    """The model's catalog generation defaults with non-null params overrides applied."""
    settings = {**model["generation"], **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return Generation(int(settings["max_new_tokens"]), float(settings["temperature"]), float(settings["top_p"]), int(settings.get("seed", 0)))


def _stable_rank(seed: int, benchmark: str, qid: str) -> str:
    return hashlib.sha256(f"{seed}:{benchmark}:{qid}".encode()).hexdigest()


def select_questions(questions: pd.DataFrame, labels: pd.DataFrame, benchmarks: str | list[str], limit: int | None, seed: int) -> pd.DataFrame:
    """Labeled questions of the chosen benchmarks, at most `limit` per benchmark in a seeded order.

    The order is fixed per question, so a larger limit keeps every question of a smaller one.
    """
    df = questions.merge(labels[["benchmark", "qid", "label"]].rename(columns={"label": "split"}), on=["benchmark", "qid"], how="inner")
    if benchmarks != "all":
        unknown = sorted(set(benchmarks) - set(questions["benchmark"]))
        if unknown:
            raise ValueError(f"evaluate.benchmarks: not in the ingested questions: {', '.join(unknown)}")
        df = df[df["benchmark"].isin(benchmarks)]
    df = df.assign(_rank=[_stable_rank(seed, b, q) for b, q in zip(df["benchmark"], df["qid"], strict=True)])
    df = df.sort_values(["benchmark", "_rank"])
    if limit:
        df = df.groupby("benchmark", sort=True).head(limit)
    return df.drop(columns="_rank").reset_index(drop=True)


def cache_key(model: str, backend: str, phash: str, gen: Generation) -> str:
    """Completion cache key: model, backend, prompt hash and generation settings."""
    return hashlib.sha256(json.dumps([model, backend, phash, asdict(gen)]).encode()).hexdigest()[:24]


class CompletionCache:
    """Append-only JSONL of completions keyed by `cache_key`; survives a kill mid-write (a torn last line is ignored)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        self.torn = 0
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.entries[entry["key"]] = entry
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.torn += 1
        if self.torn:  # rewrite without the torn line(s), so appends start on a clean line
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries.values()))
        os.replace(tmp, self.path)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.entries[key]

    def add(self, entries: list[dict[str, Any]]) -> None:
        """Append entries and fsync, so everything added survives a crash."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
            f.flush()
            os.fsync(f.fileno())
        self.entries.update((e["key"], e) for e in entries)


def generate_cached(
    chats: list[Chat], keys: list[str], make_backend: Callable[[], Backend], gen: Generation, cache: CompletionCache, batch_size: int, desc: str
) -> list[Completion]:
    """Completions for all chats: cached ones read back, missing ones generated longest-first in batches and cached per batch.

    Generation order depends only on the missing set, so a resumed run repeats exactly the batches a killed run had left.
    """
    missing = sorted({k: i for i, k in enumerate(keys) if k not in cache}.items(), key=lambda p: (-len(json.dumps(chats[p[1]])), p[0]))
    print(f"{desc}: {len(missing)} prompt(s) to generate, {len(set(keys)) - len(missing)} cached")
    if missing:
        backend = make_backend()  # loaded only when something is missing
        with tqdm(total=len(missing), desc=desc, unit="prompt") as bar:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                done = backend.generate([chats[i] for _, i in chunk], gen)
                cache.add([{"key": k, "text": c.text, "tokens": c.tokens, "latency_s": c.latency_s} for (k, _), c in zip(chunk, done, strict=True)])
                bar.update(len(chunk))
    return [Completion(cache[k]["text"], cache[k]["tokens"], cache[k]["latency_s"]) for k in keys]


def evaluate(
    model: dict[str, Any],
    rows: pd.DataFrame,
    make_backend: Callable[[], Backend],
    backend_name: str,
    gen: Generation,
    cache: CompletionCache,
    batch_size: int,
) -> pd.DataFrame:
    """Ask every question in `rows`, score the answers; one predictions row per question."""
    records = rows.to_dict("records")
    chats = [build_chat(r, model["chat"]) for r in records]
    hashes = [prompt_hash(c) for c in chats]
    keys = [cache_key(model["name"], backend_name, h, gen) for h in hashes]
    completions = generate_cached(chats, keys, make_backend, gen, cache, batch_size, f"evaluate {model['name']}")
    return score(model, backend_name, records, hashes, completions)


def score(model: dict[str, Any], backend_name: str, records: list[dict[str, Any]], hashes: list[str], completions: list[Completion]) -> pd.DataFrame:
    """Extract and grade each completion; unreadable ones are wrong and flagged."""
    out = []
    for r, h, c in zip(records, hashes, completions, strict=True):
        ex = extract_answer(c.text, r["options"], r["answer_format"], model["chat"].get("think", "keep"))
        out.append(
            {
                "model": model["name"],
                "backend": backend_name,
                "benchmark": r["benchmark"],
                "qid": r["qid"],
                "split": r["split"],
                "answer": r["answer"],
                "prompt_hash": h,
                "completion": c.text,
                "extracted": ex.answer,
                "correct": int(ex.answer == r["answer"]),  # 0/1, so avg(correct) is an accuracy in SQL
                "parse_failed": int(ex.parse_failed),
                "extraction_rule": ex.rule,
                "tokens": c.tokens,
                "latency_s": c.latency_s,
            }
        )
    return pd.DataFrame(out)


def _seed(seed: int, *parts: str) -> int:
    return int(hashlib.sha256(":".join([str(seed), *parts]).encode()).hexdigest()[:8], 16)


def bootstrap_ci(correct: int, n: int, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of an accuracy (resampling n graded answers = Binomial(n, k/n) draws)."""
    if n == 0:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).binomial(n, correct / n, size=n_boot) / n
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarise(preds: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Model x benchmark (and 'all') x split (reasoning, knowledge, all): n, correct, accuracy, 95% bootstrap CI."""
    rows = []
    pooled = preds.assign(benchmark="all")
    for frame in (preds, pooled):
        for (model, bench), g in frame.groupby(["model", "benchmark"], sort=True):
            for split in (*SPLITS, "all"):
                s = g if split == "all" else g[g["split"] == split]
                n, k = len(s), int(s["correct"].sum())
                if n == 0:
                    continue
                lo, hi = bootstrap_ci(k, n, n_boot, _seed(seed, model, bench, split))
                rows.append(
                    {
                        "model": model,
                        "benchmark": bench,
                        "split": split,
                        "n": n,
                        "correct": k,
                        "accuracy": k / n,
                        "ci_low": lo,
                        "ci_high": hi,
                        "parse_failed": int(s["parse_failed"].sum()),
                    }
                )
    return pd.DataFrame(rows)


def cmh_pvalue(preds: pd.DataFrame) -> float:
    """Cochran-Mantel-Haenszel test (continuity-corrected) of accuracy vs split, stratified by benchmark."""
    num, var = 0.0, 0.0
    for _, g in preds.groupby("benchmark"):
        know, reas = g[g["split"] == "knowledge"]["correct"], g[g["split"] == "reasoning"]["correct"]
        n1, n2 = len(know), len(reas)
        t, m1 = n1 + n2, int(know.sum() + reas.sum())
        if n1 == 0 or n2 == 0 or t < 2:
            continue
        num += know.sum() - n1 * m1 / t
        var += n1 * n2 * m1 * (t - m1) / (t**2 * (t - 1))
    if var == 0:
        return float("nan")
    return float(stats.chi2.sf((abs(num) - 0.5) ** 2 / var, 1)) if abs(num) > 0.5 else 1.0


def gaps(preds: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per model: knowledge minus reasoning accuracy, its bootstrap CI, Fisher's exact p and the benchmark-stratified CMH p."""
    rows = []
    for model, g in preds.groupby("model", sort=True):
        know, reas = g[g["split"] == "knowledge"]["correct"], g[g["split"] == "reasoning"]["correct"]
        nk, nr, kk, kr = len(know), len(reas), int(know.sum()), int(reas.sum())
        row = {"model": model, "n_knowledge": nk, "n_reasoning": nr}
        if nk and nr:
            rng = np.random.default_rng(_seed(seed, model, "gap"))
            draws = rng.binomial(nk, kk / nk, n_boot) / nk - rng.binomial(nr, kr / nr, n_boot) / nr
            lo, hi = np.quantile(draws, [0.025, 0.975])
            row |= {
                "knowledge_accuracy": kk / nk,
                "reasoning_accuracy": kr / nr,
                "gap": kk / nk - kr / nr,
                "gap_ci_low": float(lo),
                "gap_ci_high": float(hi),
                "p_fisher": float(stats.fisher_exact([[kk, nk - kk], [kr, nr - kr]]).pvalue),
                "p_cmh": cmh_pvalue(g),
            }
        rows.append(row)
    cols = ["knowledge_accuracy", "reasoning_accuracy", "gap", "gap_ci_low", "gap_ci_high", "p_fisher", "p_cmh"]
    return pd.DataFrame(rows).reindex(columns=["model", "n_knowledge", "n_reasoning", *cols])
