"""How a question is asked (chat messages, prompt hash) and how an answer is read back (tolerant extraction)."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.catalog import Chat

WORD_TO_LETTER = {"yes": "A", "no": "B", "maybe": "C"}  # the ingest stage's fixed yes/no/maybe options
LETTER_TO_WORD = {v: k for k, v in WORD_TO_LETTER.items()}

INSTRUCTIONS = {
    ("letter", "direct"): "Answer with the letter of the correct option only, in the form 'Answer: X'.",
    ("letter", "cot"): "Think step by step, then give the letter of the correct option on the last line, in the form 'Answer: X'.",
    ("yes_no_maybe", "direct"): "Answer with yes, no or maybe only, in the form 'Answer: yes'.",
    ("yes_no_maybe", "cot"): "Think step by step, then answer yes, no or maybe on the last line, in the form 'Answer: yes'.",
}


# HuatuoGPT-o1's "strict" evaluation prompt (its eval.py, sentence repeated as upstream has it), used by third-party
# evaluations of the study's collection: instruction, question, lettered options (yes/no/maybe too), one per line
STRICT = (
    "Please answer the following multiple-choice questions. Please answer the following multiple-choice questions, "
    "ensuring your response concludes with the correct option in the format: 'The answer is A.'."
)


def user_prompt(row: dict[str, Any], style: str = "direct") -> str:
    """The question as the user turn: context, question, lettered options, instruction (strict: instruction first)."""
    if style == "strict":
        context = [row["context"]] if isinstance(row.get("context"), str) and row["context"] else []
        return "\n".join([STRICT, *context, row["question"], *(f"{k}. {v}" for k, v in row["options"].items())])
    parts = [row["context"]] if isinstance(row.get("context"), str) and row["context"] else []
    parts.append(f"Question: {row['question']}")
    if row["answer_format"] == "letter":
        parts.append("Options:\n" + "\n".join(f"{k}. {v}" for k, v in row["options"].items()))
    parts.append(INSTRUCTIONS[(row["answer_format"], style)])
    return "\n\n".join(parts)


def build_chat(row: dict[str, Any], chat: Chat) -> list[dict[str, str]]:
    """Chat messages for one question under a model's chat settings (system prompt, prompt style)."""
    messages = [{"role": "system", "content": chat.system}] if chat.system else []
    messages.append({"role": "user", "content": user_prompt(row, chat.prompt)})
    return messages


def prompt_hash(messages: list[dict[str, str]]) -> str:
    """A stable 16-hex-digit hash of the exact messages sent."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Extraction:
    """The letter read from a completion (None if none), whether parsing failed, and which rule decided."""

    answer: str | None
    parse_failed: bool
    rule: str


_NOISE = re.compile(r"\\text\{|\\mathrm\{|[*$`{}]")
_LETTER = re.compile(r"^[\s(\[]*([A-Za-z])[)\].]?(?=$|[\s.,:;)\]])")
_SECOND = re.compile(r"^[)\].]?\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?([A-Za-z])(?=$|[\s.,:;)\]])", re.IGNORECASE)
_WORDS = re.compile(r"\b(yes|no|maybe)\b", re.IGNORECASE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_PHRASE = re.compile(
    r"\b(?:final answer|correct answer|correct option|the answer|answer|option)\s*(?:is|would be|will be|:|=|-)?\s*(?:option\s*)?[:\-]?\s*",
    re.IGNORECASE,
)
_PARENS = re.compile(r"\(([A-Z])\)")
_IS_CORRECT = re.compile(
    r"(?:\boption\s+|\()?\b([A-Z])\b\)?(?:\.[^\n.]{0,80})?\s+is\s+(?:the\s+|indeed\s+the\s+)?(?:correct|right|best|most appropriate|most likely)\b"
)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.casefold()).strip()


def _read(snippet: str, options: dict[str, str], yes_no_maybe: bool, strict: bool = False) -> str | None:
    """Decide one snippet: an option letter, 'ambiguous', 'invalid' or None (no answer in it).

    strict (a bare line, no 'answer' cue before it): a letter followed by a word is a word ("I think", "A patient").
    """
    snippet = _NOISE.sub("", snippet).strip()
    if yes_no_maybe:
        words = {w.lower() for w in _WORDS.findall(snippet.split("\n")[0])}
        if len(words) == 1 and _WORDS.match(snippet):
            return WORD_TO_LETTER[words.pop()]
        if len(words) > 1 and _WORDS.match(snippet):
            return "ambiguous"
    m = _LETTER.match(snippet)
    if m:
        letter, rest = m.group(1), snippet[m.end() :]
        # a lowercase letter counts only when nothing word-like follows ("answer: c." yes, "answer is a fever" no)
        closed = m.group(0).rstrip()[-1] in ".)]"  # "C. Warfarin", "(C) ..." name an option
        wordlike = re.match(r"\s+\w", rest) if strict and not closed else re.match(r"\s+[a-z]", rest)
        if (letter.isupper() and not (strict and wordlike)) or not wordlike:
            second = _SECOND.match(rest)
            if second and second.group(1).upper() in options and second.group(1).upper() != letter.upper():
                return "ambiguous"
            return letter.upper() if letter.upper() in options else "invalid"
    text = _norm(snippet)
    hits = [k for k, v in options.items() if _norm(v) and (text == _norm(v) or text.startswith(_norm(v) + " "))]
    return hits[0] if len(hits) == 1 else None


def follows_think_format(text: str, options: dict[str, str], answer_format: str, prefilled: bool = False) -> bool:
    """True for a think block (opened by the text, or `prefilled` by the prompt) closed exactly once, then one parseable answer."""
    opened = prefilled or text.lstrip().startswith("<think>")
    if not opened or text.count("</think>") != 1:
        return False
    return not extract_answer(text.split("</think>", 1)[1], options, answer_format).parse_failed


def extract_answer(completion: str, options: dict[str, str], answer_format: str = "letter", think: str = "keep") -> Extraction:
    """Read the chosen option from free text; unreadable or ambiguous output is flagged, never raised."""
    text = completion or ""
    if think == "strip" or "</think>" in text:
        text = text.rsplit("</think>", 1)[1] if "</think>" in text else ("" if "<think>" in text else text)
    yes_no_maybe = answer_format == "yes_no_maybe"

    def decide(snippet: str, rule: str) -> Extraction | None:
        found = _read(snippet, options, yes_no_maybe, strict=rule in ("whole reply", "final line"))
        if found in ("ambiguous", "invalid"):
            return Extraction(None, True, f"{rule}: {found}")
        return Extraction(found, False, rule) if found else None

    candidates: list[tuple[str, str]] = [(m, "answer tag") for m in _ANSWER_TAG.findall(text)[-1:]]
    candidates += [(m, "boxed") for m in _BOXED.findall(text)[-1:]]
    phrases = [text[m.end() :].split("\n")[0] for m in _PHRASE.finditer(text)]
    candidates += [(p, "answer phrase") for p in reversed(phrases)]  # the last statement wins
    candidates += [(m, "letter is correct") for m in _IS_CORRECT.findall(text)[-1:]]
    lines = [line for line in text.strip().split("\n") if line.strip()]
    if len(lines) == 1:
        candidates.append((lines[0], "whole reply"))
    if lines:
        candidates.append((lines[-1], "final line"))
    for snippet, rule in candidates:
        result = decide(snippet, rule)
        if result:
            return result
    parens = {p for p in _PARENS.findall(text) if p in options}
    if len(parens) == 1:
        return Extraction(parens.pop(), False, "parenthesised letter")
    return Extraction(None, True, "no answer found")


@dataclass(frozen=True)
class ChoiceMatch:
    """HuatuoGPT-o1's reading of a completion: the first and the last option it matched, and by which rule."""

    first: str
    last: str
    rule: str  # answer phrase | letter | option text | closest string


_AFTER = ("## Final Response\n\n", "## Final Answer\n\n", "</think>")  # read what follows the first marker found
_ANSWER_IS = re.compile(r"answer is\s*?([A-N])", re.S)


def match_choice(text: str, options: dict[str, str]) -> ChoiceMatch:
    """HuatuoGPT-o1's choice matcher, as third-party evaluations of the study's collection score it.

    Rules in order: "answer is X" (X in A-N); a lone option letter between non-word characters (not "A " / "a "
    starting a phrase); an option's text in the completion (lower-cased; both first and last take the option whose
    occurrence starts latest, as upstream does); else the option whose text is closest to the whole completion
    (difflib ratio, the later option on ties). Something is always chosen; a benchmark's accuracy is the better of
    the first and the last matches (stats.summarise).
    """
    for marker in _AFTER:
        if marker in text:
            text = text.split(marker)[-1]
            break
    found = _ANSWER_IS.findall(text)
    if found:
        return ChoiceMatch(found[0], found[-1], "answer phrase")
    letters = "ABCDEFGHIJKLMN"[: len(options)]
    lone = re.compile(r"([\u4e00-\u9fff]|is |是|项|\*|\W|\ |\(|为|^|'|\"|#)(?![aA] )([" + letters + r"])(\W|[\u4e00-\u9fff]|$)", re.S)
    found = [m.group(2) for m in lone.finditer(text)]
    if found:
        return ChoiceMatch(found[0], found[-1], "letter")
    low = text.lower()
    present = [k for k, v in options.items() if v.lower() in low]
    if present:
        last = max(present, key=lambda k: low.rindex(options[k].lower()))
        first = max(present, key=lambda k: low.index(options[k].lower()))
        return ChoiceMatch(first, last, "option text")
    best, closest = -1.0, next(iter(options))
    for k, v in options.items():
        ratio = difflib.SequenceMatcher(None, v.lower(), low).ratio()
        if ratio >= best:
            best, closest = ratio, k
    return ChoiceMatch(closest, closest, "closest string")
