"""Adversarial evaluation: misleading traces toward a wrong option, prefill/turn prompts, paired robustness tables."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from registry.backends import Backend, Chat, Generation
from registry.evaluate import CompletionCache, _seed, cache_key, generate_cached, score
from registry.prompts import WORD_TO_LETTER, build_chat, extract_answer, prompt_hash, user_prompt

PROTOCOLS = ("prefill", "turn")
RECONSIDER_CUE = "\n\nWait, let me reconsider. Looking at the options again,"  # open-ended: a closed sentence lets small models stop
RECONSIDER_TURN = "Please reconsider the question carefully, step by step, and give your final answer in the form 'Answer: X'."
SPLITS = ("reasoning", "knowledge", "all")
LETTER_TO_WORD = {v: k for k, v in WORD_TO_LETTER.items()}


def wrong_targets(row: dict[str, Any], n: int, seed: int) -> list[str]:
    """Up to `n` distinct wrong option letters, chosen with a seed fixed per question."""
    wrong = sorted(k for k in row["options"] if k != row["answer"])
    rng = np.random.default_rng(_seed(seed, row["benchmark"], row["qid"], "targets"))
    return [str(x) for x in rng.permutation(wrong)[:n]]


def _option_name(row: dict[str, Any], letter: str) -> str:
    return LETTER_TO_WORD[letter] if row["answer_format"] == "yes_no_maybe" else f"{letter}. {row['options'][letter]}"


def trace_request(row: dict[str, Any], target: str) -> Chat:
    """Ask a generator to argue step by step for the (wrong) `target` option and conclude with it."""
    final = LETTER_TO_WORD[target] if row["answer_format"] == "yes_no_maybe" else target
    question = user_prompt(row).rsplit("\n\n", 1)[0]  # the question without the answering instruction
    ask = (
        f"{question}\n\nThe correct answer is {_option_name(row, target)}. Write the step-by-step reasoning of an expert who "
        f"arrives at this answer, in the first person, without saying it was given. End with the line 'Answer: {final}'."
    )
    return [{"role": "user", "content": ask}]


def generate_traces(
    rows: pd.DataFrame,
    generator: str,
    make_backend: Callable[[], Backend],
    backend_name: str,
    gen: Generation,
    cache: CompletionCache,
    n_traces: int,
    max_attempts: int,
    retry_temperature: float,
    seed: int,
    batch_size: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Traces per question and target, returned as (traces, dropped).

    A trace whose extracted answer is not its target is regenerated (sampled) up to `max_attempts` times, then dropped.
    """
    pending = [(r, i, t) for r in rows.to_dict("records") for i, t in enumerate(wrong_targets(r, n_traces, seed))]
    accepted, last_text = [], {}
    for attempt in range(max_attempts):
        if not pending:
            break
        g = gen if attempt == 0 else Generation(gen.max_new_tokens, retry_temperature, gen.top_p, seed + attempt)
        chats = [trace_request(r, t) for r, _, t in pending]
        hashes = [prompt_hash(c) for c in chats]
        keys = [cache_key(generator, backend_name, h, g) for h in hashes]
        done = generate_cached(chats, keys, make_backend, g, cache, batch_size, f"traces by {generator} (attempt {attempt + 1})")
        retry = []
        for (r, i, t), h, c in zip(pending, hashes, done, strict=True):
            if extract_answer(c.text, r["options"], r["answer_format"]).answer == t:
                accepted.append({"benchmark": r["benchmark"], "qid": r["qid"], "trace_index": i, "target": t, "trace": c.text.strip(),
                                 "generator": generator, "prompt_hash": h, "attempts": attempt + 1})  # fmt: skip
            else:
                retry.append((r, i, t))
                last_text[(r["benchmark"], r["qid"], i)] = c.text
        pending = retry
    dropped = pd.DataFrame(
        [
            {"benchmark": r["benchmark"], "qid": r["qid"], "trace_index": i, "target": t, "last_trace": last_text[(r["benchmark"], r["qid"], i)]}
            for r, i, t in pending
        ],
        columns=["benchmark", "qid", "trace_index", "target", "last_trace"],
    )
    return pd.DataFrame(accepted, columns=TRACE_COLUMNS), dropped


TRACE_COLUMNS = ["benchmark", "qid", "trace_index", "target", "trace", "generator", "prompt_hash", "attempts"]


def study_traces(records: Iterator[tuple[str, dict[str, Any]]], benchmark: str, id_field: str | None, options_of: dict[str, dict]) -> list[dict]:
    """Traces shipped with the study collection (`adversarial_trace_0..2`); the target is the option each trace concludes with."""
    out = []
    for key, rec in records:
        qid = str(rec[id_field]).strip() if id_field else key
        q = options_of.get(qid)
        if q is None:
            continue
        for i in range(3):
            text = rec.get(f"adversarial_trace_{i}")
            if not isinstance(text, str) or not text.strip():
                continue
            target = extract_answer(text, q["options"], q["answer_format"]).answer
            if target is not None and target != q["answer"]:
                h = hashlib.sha256(text.encode()).hexdigest()[:16]
                out.append({"benchmark": benchmark, "qid": qid, "trace_index": i, "target": target, "trace": text.strip(),
                            "generator": "study", "prompt_hash": h, "attempts": 1})  # fmt: skip
    return out


def adversarial_chat(row: dict[str, Any], trace: str, chat: dict[str, Any], protocol: str, cue: str = RECONSIDER_CUE) -> Chat:
    """The clean question followed by the misleading trace.

    prefill: the trace plus a cue is the unfinished assistant turn; turn: the trace is a finished turn, then a user asks to reconsider.
    """
    messages = build_chat(row, chat)
    if protocol == "prefill":
        return [*messages, {"role": "assistant", "content": trace.rstrip() + cue}]
    if protocol == "turn":
        return [*messages, {"role": "assistant", "content": trace}, {"role": "user", "content": RECONSIDER_TURN}]
    raise ValueError(f"adversarial protocol must be one of {PROTOCOLS}, got '{protocol}'")


def evaluate_adversarial(
    model: dict[str, Any],
    rows: pd.DataFrame,
    traces: pd.DataFrame,
    make_backend: Callable[[], Backend],
    backend_name: str,
    gen: Generation,
    cache: CompletionCache,
    batch_size: int,
    protocol: str,
    cue: str = RECONSIDER_CUE,
) -> pd.DataFrame:
    """One graded answer per (question, trace); the answer is read from what the model wrote after the trace."""
    pairs = traces.merge(rows, on=["benchmark", "qid"], how="inner").sort_values(["benchmark", "qid", "trace_index"])
    records = pairs.to_dict("records")
    chats = [adversarial_chat(r, r["trace"], model["chat"], protocol, cue) for r in records]
    hashes = [prompt_hash(c) for c in chats]
    keys = [cache_key(model["name"], backend_name, h, gen) for h in hashes]
    done = generate_cached(chats, keys, make_backend, gen, cache, batch_size, f"adversarial {model['name']} ({protocol})")
    preds = score(model, backend_name, records, hashes, done)
    preds.insert(4, "trace_index", [r["trace_index"] for r in records])
    preds.insert(5, "target", [r["target"] for r in records])
    preds.insert(6, "protocol", protocol)
    preds["took_bait"] = (preds["extracted"] == preds["target"]).astype(int)
    return preds


def robustness(clean: pd.DataFrame, adversarial: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Model x benchmark ('all' pooled) x split: clean vs adversarial accuracy on the same (question, trace) pairs.

    Also the drop with a paired bootstrap CI (resampling questions), took-the-bait share and clean-correct flip share.
    """
    pairs = adversarial.merge(
        clean[["model", "benchmark", "qid", "correct"]].rename(columns={"correct": "clean_correct"}), on=["model", "benchmark", "qid"], how="inner"
    )
    rows = []
    for frame in (pairs, pairs.assign(benchmark="all")):
        for (model, bench), g in frame.groupby(["model", "benchmark"], sort=True):
            for split in SPLITS:
                s = g if split == "all" else g[g["split"] == split]
                if s.empty:
                    continue
                per_q = s.groupby(["benchmark", "qid"]).agg(t=("correct", "size"), a=("correct", "sum"), c=("clean_correct", "first"))
                t, a, c = per_q["t"].to_numpy(float), per_q["a"].to_numpy(float), per_q["c"].to_numpy(float)
                rng = np.random.default_rng(_seed(seed, model, bench, split, "drop"))
                w = rng.multinomial(len(t), np.full(len(t), 1 / len(t)), size=n_boot)
                drops = (w @ (c * t) - w @ a) / (w @ t)
                lo, hi = np.quantile(drops, [0.025, 0.975])
                clean_ok = s["clean_correct"] == 1
                rows.append(
                    {
                        "model": model,
                        "benchmark": bench,
                        "split": split,
                        "questions": len(per_q),
                        "pairs": len(s),
                        "clean_accuracy": float(s["clean_correct"].mean()),
                        "adversarial_accuracy": float(s["correct"].mean()),
                        "drop": float(s["clean_correct"].mean() - s["correct"].mean()),
                        "drop_ci_low": float(lo),
                        "drop_ci_high": float(hi),
                        "took_bait": float(s["took_bait"].mean()),
                        "flipped": float((s.loc[clean_ok, "correct"] == 0).mean()) if clean_ok.any() else float("nan"),
                        "parse_failed": int(s["parse_failed"].sum()),
                    }
                )
    return pd.DataFrame(rows)
