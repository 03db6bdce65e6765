"""GRPO reward functions, plain functions in the TRL signature: `f(prompts, completions, **columns) -> list[float | None]`.

Every other dataset column arrives as a keyword list (`answer`, `options`, `answer_format`, `prefilled_think`, ...).
The answer is read with the evaluation's own extractor, so a reward is earned exactly when the evaluation would
count the answer correct: one answer, the right one ("A or B" earns nothing).
"""

from __future__ import annotations

import json
from typing import Any

from registry.prompts import extract_answer, follows_think_format

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def _text(completion: Any) -> str:
    """A completion as text (TRL passes strings for text prompts, message lists for conversational ones)."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def _options(options: Any) -> dict[str, str]:
    """Options as a letter -> text dict (datasets may hand back JSON text or a list of {letter, text})."""
    if isinstance(options, str):
        options = json.loads(options)
    if isinstance(options, list):
        return {o["letter"]: o["text"] for o in options}
    return dict(options)


def _opened(text: str, prefilled: bool) -> bool:
    """True when the think block is open at the start: written by the model, or prefilled by the prompt."""
    return prefilled or text.lstrip().startswith(THINK_OPEN)


def accuracy(completions: list, answer: list[str], options: list, answer_format: list[str], **_: Any) -> list[float]:
    """1 when the answer after the think block is exactly one option and the right one, else 0."""
    out = []
    for completion, gold, opts, fmt in zip(completions, answer, options, answer_format, strict=True):
        got = extract_answer(_text(completion), _options(opts), fmt, think="strip")
        out.append(1.0 if not got.parse_failed and got.answer == gold else 0.0)
    return out


def think_format(completions: list, options: list, answer_format: list[str], prefilled_think: list[bool] | None = None, **_: Any) -> list[float]:
    """1 for a think block (opened by the model or prefilled by the prompt), closed once, then one parseable answer."""
    prefilled_think = prefilled_think or [False] * len(completions)
    rows = zip(completions, options, answer_format, prefilled_think, strict=True)
    return [float(follows_think_format(_text(c), _options(o), f, p)) for c, o, f, p in rows]


def tags(completions: list, prefilled_think: list[bool] | None = None, **_: Any) -> list[float]:
    """Partial credit for the parts of the format, so a small model gets reward spread before it masters it.

    A quarter each: the think block opened (or prefilled), closed exactly once, an `Answer:` line after it, nothing
    but that line after the answer.
    """
    prefilled_think = prefilled_think or [False] * len(completions)
    out = []
    for completion, prefilled in zip(completions, prefilled_think, strict=True):
        text = _text(completion)
        after = text.split(THINK_CLOSE, 1)[1] if THINK_CLOSE in text else ""
        parts = [
            _opened(text, prefilled) and text.count(THINK_OPEN) == (0 if prefilled else 1),
            text.count(THINK_CLOSE) == 1,
            "answer:" in after.lower(),
            after.strip().lower().startswith("answer:") and "\n" not in after.strip(),
        ]
        out.append(sum(parts) / len(parts))
    return out


REWARDS = {"accuracy": accuracy, "format": think_format, "tags": tags}
