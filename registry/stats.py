"""Statistics over graded answers: accuracy with Wilson CIs, knowledge-vs-reasoning gaps and paired robustness with bootstrap CIs.

A single proportion (an accuracy, a share) gets the Wilson score interval: it stays informative at 0 of n and n of n,
where a percentile bootstrap of Binomial(n, k/n) draws collapses to [0, 0] or [1, 1]. Differences (the gap, the
adversarial drop) keep the seeded percentile bootstrap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import stats

from schemas.vocab import Category, values

CATEGORIES = values(Category)


def seed_of(seed: int, *parts: str) -> int:
    """A seed derived from `seed` and names, so each cell of a table draws its own fixed resamples."""
    return int(hashlib.sha256(":".join([str(seed), *parts]).encode()).hexdigest()[:8], 16)


def cells(preds: pd.DataFrame) -> Iterator[tuple[str, str, str, pd.DataFrame]]:
    """(model, benchmark, category, rows) per model x benchmark x category, with pooled benchmark 'all' and category 'all'."""
    for frame in (preds, preds.assign(benchmark="all")):
        for (model, bench), g in frame.groupby(["model", "benchmark"], sort=True):
            for category in (*CATEGORIES, "all"):
                rows = g if category == "all" else g[g["category"] == category]
                if len(rows):
                    yield str(model), str(bench), category, rows


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (e.g. 0 of 4 -> (0, 0.490), 5 of 10 -> (0.237, 0.763)); NaNs when n is 0.

    The same interval as `scipy.stats.binomtest(k, n).proportion_ci(level, method="wilson")`, in closed form.
    """
    if n == 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf((1 + level) / 2))
    p, z2 = k / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (0.0 if k == 0 else max(0.0, float(center - half))), (1.0 if k == n else min(1.0, float(center + half)))


def summarise(preds: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Model x benchmark (and 'all') x category (reasoning, knowledge, all) x scorer: n, correct, accuracy, 95% Wilson CI.

    scorer medreg: our extraction (unreadable answers are wrong). huatuo: HuatuoGPT-o1's scoring of the same
    completions: the better of the first-match and the last-match accuracy of the cell (`match`: which), as upstream
    scores each benchmark; `parse_failures` counts its closest-string guesses. `think_format_share`: the share of answers
    in the trained format. The CI is the Wilson score interval of correct/n (no resampling, so no seed).
    """
    rows = []
    for model, bench, category, s in cells(preds):
        n, think = len(s), float(s["think_format"].mean())
        first, last = int((s["huatuo_first"] == s["answer"]).sum()), int((s["huatuo_last"] == s["answer"]).sum())
        match, k_huatuo = ("first", first) if first > last else ("last", last)
        for scorer, k, chosen, failed in (
            ("medreg", int(s["correct"].sum()), None, int(s["parse_failed"].sum())),
            ("huatuo", k_huatuo, match, int((s["huatuo_rule"] == "closest string").sum())),
        ):
            lo, hi = wilson_ci(k, n, level)
            rows.append(
                {"model": model, "benchmark": bench, "category": category, "scorer": scorer, "match": chosen, "n": n, "n_correct": k,
                 "accuracy": k / n, "ci_low": lo, "ci_high": hi, "parse_failures": failed, "think_format_share": think}
            )  # fmt: skip
    return pd.DataFrame(rows)


def cmh_pvalue(preds: pd.DataFrame) -> float:
    """Cochran-Mantel-Haenszel test (continuity-corrected) of accuracy vs category, stratified by benchmark."""
    num, var = 0.0, 0.0
    for _, g in preds.groupby("benchmark"):
        know, reas = g[g["category"] == "knowledge"]["correct"], g[g["category"] == "reasoning"]["correct"]
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
        know, reas = g[g["category"] == "knowledge"]["correct"], g[g["category"] == "reasoning"]["correct"]
        nk, nr, kk, kr = len(know), len(reas), int(know.sum()), int(reas.sum())
        row = {"model": model, "n_knowledge": nk, "n_reasoning": nr}
        if nk and nr:
            rng = np.random.default_rng(seed_of(seed, str(model), "gap"))
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


def robustness(clean: pd.DataFrame, adversarial: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Model x benchmark ('all' pooled) x category: clean vs adversarial accuracy on the same (question, trace) pairs.

    Also the drop with a paired percentile bootstrap CI (resampling questions, so a question's traces move together),
    the took-the-bait share, the share of clean-correct answers that flipped and the count of unreadable answers.
    """
    pairs = adversarial.merge(
        clean[["model", "benchmark", "qid", "correct"]].rename(columns={"correct": "clean_correct"}), on=["model", "benchmark", "qid"], how="inner"
    )
    pairs["_source"] = pairs["benchmark"]  # a question is (benchmark, qid) also in the pooled 'all' rows, where qids of benchmarks collide
    rows = []
    for model, bench, category, s in cells(pairs):
        per_q = s.groupby(["_source", "qid"]).agg(t=("correct", "size"), a=("correct", "sum"), c=("clean_correct", "first"))
        t, a, c = per_q["t"].to_numpy(float), per_q["a"].to_numpy(float), per_q["c"].to_numpy(float)
        w = np.random.default_rng(seed_of(seed, model, bench, category, "drop")).multinomial(len(t), np.full(len(t), 1 / len(t)), size=n_boot)
        lo, hi = np.quantile((w @ (c * t) - w @ a) / (w @ t), [0.025, 0.975])
        clean_ok = s["clean_correct"].astype(bool)
        rows.append(
            {
                "model": model,
                "benchmark": bench,
                "category": category,
                "questions": len(per_q),
                "pairs": len(s),
                "clean_accuracy": float(s["clean_correct"].mean()),
                "adversarial_accuracy": float(s["correct"].mean()),
                "drop": float(s["clean_correct"].mean() - s["correct"].mean()),
                "drop_ci_low": float(lo),
                "drop_ci_high": float(hi),
                "took_bait_share": float(s["took_bait"].mean()),
                "flipped_share": float((~s.loc[clean_ok, "correct"].astype(bool)).mean()) if clean_ok.any() else float("nan"),
                "parse_failures": int(s["parse_failed"].sum()),
            }
        )
    return pd.DataFrame(rows)
