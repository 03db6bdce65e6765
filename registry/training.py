"""Training data for the BioMed-R1 recipe: load the catalog's datasets, decontaminate, select; build SFT and GRPO examples.

Rows are loaded by the benchmarks' own loader (registry/ingest.py), so a bad row is reported the same way. SFT rows
become conversations whose user turn is the evaluation's prompt and whose assistant turn is the reasoning in a think
block, then an answer the evaluation's extractor reads. GRPO prompts are rendered with the model's chat template;
adversarial ones carry a misleading trace inside the opened think block, followed by the reconsider cue.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from registry.adversarial import RECONSIDER_CUE, adversarial_chat
from registry.backends import Chat, render_chat
from registry.catalog import Chat as ChatSettings
from registry.catalog import TrainingSource
from registry.errors import MedregError
from registry.ingest import IngestError, Reading, load_rows, schema_problems
from registry.prompts import LETTER_TO_WORD, build_chat
from schemas.training import TrainingRowsSchema

# ---------------------------------------------------------------- loading


def load(
    catalog: dict[str, TrainingSource],
    source: str,
    root: Path | str,
    names: list[str] | str = "all",
    allow_unpinned: bool = False,
    twin: Path | None = None,
):
    """Every row of the chosen training datasets from `source`, validated; returns (rows, skipped, files, hub revisions).

    A dataset the source does not have is skipped (and reported); one named explicitly must be there.
    """
    root = Path(root)
    if source != "hub" and not root.is_dir():
        raise MedregError(f"train_data.{source}_dir: {root} does not exist or is not a directory")
    chosen = list(catalog) if names == "all" else list(names)
    file_of = (lambda e: e.demo) if source == "demo" else (lambda e: e.mirror)
    reading = Reading(source, root, file_of, lambda e: e.hub, allow_unpinned, "dataset", "train_data", twin)
    columns = [c for c in TrainingRowsSchema.to_schema().columns if c != "kind"]
    df, problems, skipped, files, counted, vanished, revisions = load_rows(catalog, chosen, reading, columns, explicit=names != "all")
    if vanished:
        raise MedregError("\n".join(vanished))
    df.insert(2, "kind", df["dataset"].map(lambda d: catalog[d].kind).astype("str"))
    problems += schema_problems(df, TrainingRowsSchema.to_schema(), "dataset")
    if problems:
        raise IngestError(problems, " (train_data: fix the rows or leave the dataset out of train_data.datasets)", counted)
    if df.empty:
        raise MedregError(f"train_data: no training rows in {root if source != 'hub' else 'the hub'} for {', '.join(chosen)}")
    return df.drop(columns="_raw").reset_index(drop=True), skipped, files, revisions


# ---------------------------------------------------------------- decontamination


def words(text: str) -> list[str]:
    """Lower-cased, whitespace-normalised words (open-r1 and s1 compare n-grams of these)."""
    return re.sub(r"\s+", " ", text.lower()).strip().split(" ")


def decontaminate(rows: pd.DataFrame, questions: pd.DataFrame, n: int, min_share: float, common: int | None, min_ratio: float | None) -> pd.DataFrame:
    """The training rows that overlap an evaluation question, by shared word n-grams or by a near-duplicate ratio.

    n-grams: the row is contaminated when at least `min_share` of its word n-grams occur in one evaluation question
    (0: any shared n-gram, as open-r1 and s1 do). An n-gram found in `common` or more evaluation questions is stock
    phrasing ("which of the following is the most likely diagnosis") and is not evidence (None: every n-gram counts).
    Near duplicates: rapidfuzz ratio of the two texts >= `min_ratio` (m1). Every ingested question counts, not only
    the evaluated ones. One row per contaminated training row, with the benchmark and qid it matched.
    """
    from rapidfuzz import fuzz, process

    index: dict[tuple[str, ...], list[int]] = {}
    for i, text in enumerate(questions["question"]):
        w = words(text)
        for gram in {tuple(w[j : j + n]) for j in range(len(w) - n + 1)}:
            index.setdefault(gram, []).append(i)
    if common is not None:
        index = {gram: found for gram, found in index.items() if len(found) < common}
    eval_texts = [" ".join(words(t)) for t in questions["question"]]
    found = []
    for row in rows.itertuples():
        w = words(row.question)
        text = " ".join(w)
        grams = {tuple(w[j : j + n]) for j in range(len(w) - n + 1)}
        counts = Counter(i for g in grams for i in index.get(g, ()))
        hit = None
        if counts:
            i, shared = counts.most_common(1)[0]
            if shared / len(grams) >= min_share:
                example = " ".join(next(g for g in grams if i in index.get(g, ())))
                hit = (i, "ngram", f"{shared} of {len(grams)} {n}-grams, e.g. '{example}'")
        if hit is None and min_ratio is not None:
            best = process.extractOne(text, eval_texts, scorer=fuzz.ratio, score_cutoff=min_ratio)
            hit = (best[2], "near_duplicate", questions["question"].iloc[best[2]]) if best else None
        if hit is not None:
            i, reason, evidence = hit
            found.append(
                {"dataset": row.dataset, "qid": row.qid, "kind": row.kind, "question": row.question, "benchmark": questions["benchmark"].iloc[i],
                 "benchmark_qid": questions["qid"].iloc[i], "reason": reason, "evidence": evidence, "score": float(fuzz.ratio(text, eval_texts[i]))}
            )  # fmt: skip
    return pd.DataFrame(found, columns=["dataset", "qid", "kind", "question", "benchmark", "benchmark_qid", "reason", "evidence", "score"])


# ---------------------------------------------------------------- selection


def select(rows: pd.DataFrame, min_p: float | None, top_share: float | None, max_rows: int | None) -> pd.DataFrame:
    """Per kind, the reasoning-heavy rows: p_reasoning >= min_p, then the top share, then at most max_rows (most reasoning-heavy first)."""
    kept = []
    for _, g in rows.groupby("kind", sort=True):
        g = g.sort_values(["p_reasoning", "dataset", "qid"], ascending=[False, True, True])
        if min_p is not None:
            g = g[g["p_reasoning"] >= min_p]
        if top_share is not None:
            g = g.head(math.ceil(top_share * len(g)))
        if max_rows is not None:
            g = g.head(max_rows)
        kept.append(g)
    return pd.concat(kept).sort_values(["kind", "dataset", "qid"]).reset_index(drop=True)


# ---------------------------------------------------------------- examples


def trim_reasoning(text: str, max_words: int | None) -> str:
    """The reasoning, cut to its last whole sentences within `max_words` (its conclusion survives); None keeps all."""
    if max_words is None or len(text.split()) <= max_words:
        return text
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    kept: list[str] = []
    for sentence in reversed(sentences):
        if kept and sum(len(s.split()) for s in kept) + len(sentence.split()) > max_words:
            break
        kept.insert(0, sentence)
    return " ".join(kept)


def final_answer(row: dict[str, Any]) -> str:
    """The answer line the evaluation's extractor reads (`Answer: C`, `Answer: yes`), or the response of a free-text row."""
    if row["answer_format"] == "free_text":
        return row["response"] or ""
    return f"Answer: {LETTER_TO_WORD[row['answer']] if row['answer_format'] == 'yes_no_maybe' else row['answer']}"


def sft_example(row: dict[str, Any], chat: ChatSettings, max_reasoning_words: int | None) -> dict[str, Chat]:
    """A prompt-completion conversation: the evaluation's prompt, then `<think>reasoning</think>` and the answer."""
    reasoning = trim_reasoning(row["reasoning"], max_reasoning_words)
    return {"prompt": build_chat(row, chat), "completion": [{"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n{final_answer(row)}"}]}


def rl_example(row: dict[str, Any], chat: ChatSettings, tokenizer: Any, trace: str | None = None, cue: str = RECONSIDER_CUE) -> dict[str, Any]:
    """A GRPO prompt rendered with the chat template, plus the columns the rewards read.

    With a trace, the prompt ends inside the assistant turn (the trace and the cue in the opened think block), so
    reward comes only from backtracking to the right answer.
    """
    messages = adversarial_chat(row, trace, chat, "prefill", cue) if trace else build_chat(row, chat)
    return {
        "prompt": render_chat(tokenizer, messages, chat.template_kwargs),
        "answer": row["answer"],
        "options": json.dumps(row["options"], ensure_ascii=False),
        "answer_format": row["answer_format"],
        "prefilled_think": bool(trace) and chat.think == "strip",
        "adversarial": bool(trace),
    }
