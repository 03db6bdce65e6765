"""The split as lm-evaluation-harness tasks and Inspect tasks, and a check that lm-eval scores our completions as we do.

`export_lm_eval` writes one lm-eval task per benchmark x category (`medreg_<benchmark>_<category>`), a group per
benchmark (`medreg_<benchmark>`), per category (`medreg_reasoning`, `medreg_knowledge`) and `medreg`, with the questions
as JSON lines beside the YAML (`data/<benchmark>/<category>.jsonl`). The prompt is medreg's (`registry/prompts.py`,
style strict, direct or cot) as a Jinja `doc_to_text`, checked at export against `user_prompt` for every question; the
answer letter is read by one regex filter (`answer-regex`, pattern `answer_regex`) that follows medreg's extraction rules as far
as a regex can; the metric is `exact_match`.

`export_inspect` writes the same data and `medreg_tasks.py`: an Inspect `@task` per benchmark x category, benchmark,
category and `medreg`, whose samples' input is the same prompt; scorers `answer_regex` (the lm-eval filter's pattern)
and, where the medreg package is importable, `extractor` (ours, registry.prompts.extract_answer).

`lm_eval_parity` replays stored completions (a predictions table) through lm-eval (`medreg-replay`, a registered lm-eval
model that answers each request with the stored completion of its question) on an export of those questions, and
compares lm-eval's exact_match with our `correct`, question by question. `python -m registry.interop ARGS` is lm-eval's
own command line with `medreg-replay` registered.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from registry.errors import MedregError
from registry.prompts import INSTRUCTIONS, STRICT, WORD_TO_LETTER, user_prompt
from schemas.vocab import LETTERS

STYLES = ("strict", "direct", "cot")
CATEGORIES = ("reasoning", "knowledge")
PREFIX = "medreg"
MARKER = "medreg-export.json"  # written in every export folder; a folder without it is never replaced
FILTER = "answer-regex"  # the lm-eval filter's name: results are keyed `exact_match,answer-regex`
INVALID = "[invalid]"  # lm-eval's answer when the filter finds none
REPLAY = "medreg-replay"  # the lm-eval model that replays stored completions
DATA_FIELDS = ("benchmark", "qid", "category", "question", "context", "options", "answer", "answer_format", "p_reasoning", "category_source")


def task_name(benchmark: str, category: str | None = None) -> str:
    """lm-eval / Inspect task name: `medreg_<benchmark>_<category>`, `medreg_<benchmark>` or `medreg_<category>`."""
    return "_".join([PREFIX, benchmark, *([category] if category else [])])


# --- the questions ---------------------------------------------------------------------------------------------------


def _options(value: Any) -> list[dict[str, str]]:
    """Options as an ordered list of {letter, text} (the split's parquet form), from that or a letter -> text dict."""
    if isinstance(value, dict):
        return [{"letter": k, "text": v} for k, v in value.items()]
    return [{"letter": o["letter"], "text": o["text"]} for o in value]


def split_records(split: Any, benchmarks: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The split's questions (a pyarrow Table, a DataFrame or records) as export records, of some benchmarks only.

    Each record: benchmark, qid, category, question, context, options (list of {letter, text}), answer, answer_format
    and, where the split has them, p_reasoning and category_source. An unknown benchmark is refused, naming the known.
    """
    if hasattr(split, "to_pylist"):
        rows = split.to_pylist()
    elif hasattr(split, "to_dict"):
        rows = split.to_dict("records")
    else:
        rows = list(split)
    missing = [c for c in ("benchmark", "qid", "category", "question", "options", "answer", "answer_format") if rows and c not in rows[0]]
    if missing:
        raise MedregError(f"split: missing column(s) {', '.join(missing)}")
    known = sorted({r["benchmark"] for r in rows})
    if benchmarks is not None:
        wanted = list(dict.fromkeys(benchmarks))
        unknown = [b for b in wanted if b not in known]
        if unknown:
            raise MedregError(f"--benchmarks: {', '.join(unknown)} not in the split (benchmarks: {', '.join(known)})")
        rows = [r for r in rows if r["benchmark"] in wanted]
    out = []
    for r in rows:
        rec = {k: (None if isinstance(r[k], float) and r[k] != r[k] else r[k]) for k in DATA_FIELDS if k in r}  # NaN: null
        rec["qid"] = str(r["qid"])
        rec["options"] = _options(r["options"])
        context = r.get("context")
        rec["context"] = context if isinstance(context, str) and context else None
        if rec["category"] not in CATEGORIES:
            raise MedregError(f"split: {rec['benchmark']}/{rec['qid']}: category {rec['category']!r} is not one of {', '.join(CATEGORIES)}")
        out.append(rec)
    if not out:
        raise MedregError("split: no questions to export")
    return sorted(out, key=lambda r: (r["benchmark"], r["category"], r["qid"]))


def our_prompt(record: dict[str, Any], style: str) -> str:
    """The user turn medreg sends for this question in prompt style `style` (registry/prompts.py)."""
    return user_prompt({**record, "options": {o["letter"]: o["text"] for o in record["options"]}}, style)


def _data_record(record: dict[str, Any], style: str) -> dict[str, Any]:
    """One JSON line of the export: the question, its options as texts (choices) and index, and the rendered prompt."""
    letters = [o["letter"] for o in record["options"]]
    return {
        "id": f"{record['benchmark']}/{record['qid']}",
        **record,
        "choices": [o["text"] for o in record["options"]],
        "answer_index": letters.index(record["answer"]),
        "prompt": our_prompt(record, style),
    }


def _groups(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records by (benchmark, category); a category a benchmark has no question in is left out."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["benchmark"], r["category"]), []).append(r)
    return groups


def _answer_format(rows: list[dict[str, Any]], benchmark: str) -> str:
    formats = sorted({r["answer_format"] for r in rows})
    if len(formats) != 1:
        raise MedregError(f"split: benchmark {benchmark} mixes answer formats ({', '.join(formats)}); one task needs one")
    return formats[0]


# --- the prompt as a Jinja template and the answer as a regex ---------------------------------------------------------


def doc_to_text(style: str, answer_format: str) -> str:
    """lm-eval's `doc_to_text`: a Jinja template over an export record that renders `user_prompt(row, style)` exactly."""
    if style not in STYLES:
        raise MedregError(f"--prompt: {style!r} is not one of {', '.join(STYLES)}")
    options = "{% for o in options %}{{ o.letter }}. {{ o.text }}{% if not loop.last %}\n{% endif %}{% endfor %}"
    if style == "strict":
        return STRICT + "\n{% if context %}{{ context }}\n{% endif %}{{ question }}\n" + options
    body = "{% if context %}{{ context }}\n\n{% endif %}Question: {{ question }}\n\n"
    if answer_format == "letter":
        body += "Options:\n" + options + "\n\n"
    return body + INSTRUCTIONS[(answer_format, style)]


_LOWER = r"[a-z](?!\s+[a-z])"  # a lowercase letter counts when no word follows it ("answer: c." yes, "answer is a fever" no)
_END = r"(?=$|[\s.,:;)\]*}$`<])"  # what may follow the letter (registry.prompts._LETTER, after its noise is removed)
# one of yes/no/maybe, none of the other two later on its line ("No, no." is no; "No, the answer is not yes" neither)
_WORD = r"(?i:yes(?![^\n]*\b(?:no|maybe)\b)|no(?![^\n]*\b(?:yes|maybe)\b)|maybe(?![^\n]*\b(?:yes|no)\b))\b"
_NOISE = r"[\s*$`{}(\[]*(?:\\text\{|\\mathrm\{)?[\s*$`{}(\[]*"  # markdown, LaTeX and brackets around the letter
_CUE = (
    r"(?:<answer>|\\boxed\{|\b(?i:final answer|correct answer|correct option|the answer|answer|option)\b\s*"
    r"(?:(?i:is|would be|will be)\b|[:=\-])?\s*(?i:option\b\s*)?[:\-]?)"
)
_IS_CORRECT = (
    r"(?:\boption\s+|\()?\b([A-Z])\b\)?(?:\.[^\n.]{0,80})?\s+is\s+(?:the\s+|indeed\s+the\s+)?"
    r"(?:correct|right|best|most appropriate|most likely)\b"
)
_NO_CUE_BEFORE = rf"\A(?:[\s\S]*</think>)?(?:(?!{_CUE}|{_IS_CORRECT})[\s\S])*?"  # from the start (after </think>), no cue on the way
_NOT_IN_THINK = r"(?![\s\S]*</think>)"  # only what follows the last </think> (registry.prompts.extract_answer)


def _not_two(letters: str) -> str:
    """Not followed by a second option letter ("A or B", "A, C", "A/B": ambiguous, as registry.prompts._SECOND reads)."""
    return rf"(?![)\].]?\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?[{letters}](?=$|[\s.,:;)\]]))"


def answer_regex(answer_format: str, letters: str = LETTERS) -> str:
    """The pattern lm-eval's `regex` filter (and the Inspect export's `answer_regex` scorer) reads the answer with.

    Alternatives, the last match in the completion winning (lm-eval `group_select: -1`): a letter (or, for yes/no/maybe
    questions, the word) after an answer cue (`<answer>`, `\\boxed{`, "answer is", "final answer:", "option", ...) and
    not followed by a second option letter (`letters`: the task's; "A or B"), "X is correct", or, when the completion
    has no cue, alone at the start of its final line ("C", "C. Warfarin", "(C)"). Only text after the last `</think>`
    counts. Capture groups: one of them holds the answer; lowercase it and map it with `answer_map`.
    """
    word = _WORD if answer_format == "yes_no_maybe" else None
    choice = "|".join([*([word] if word else []), "[A-Z]", _LOWER])
    after_cue = rf"{_CUE}{_NOISE}({choice}){_END}{_not_two(letters)}"
    final_line = rf"{_NO_CUE_BEFORE}(?m:^)[ \t*$`(\[]*({choice})(?:[.)\]][^\n]*)?[\s*$`]*\Z"
    alternatives = [after_cue, _IS_CORRECT, final_line]
    if word:  # a final line that starts with the word ("Yes, ...")
        alternatives.append(rf"{_NO_CUE_BEFORE}(?m:^)[ \t*]*({word})[^\n]*\s*\Z")
    return "(?:" + "|".join(alternatives) + ")" + _NOT_IN_THINK


def answer_map(answer_format: str) -> dict[str, str]:
    """Lowercased capture -> option letter: the letters themselves, and yes/no/maybe for yes/no/maybe questions."""
    mapping = {c: c.upper() for c in "abcdefghijklmnopqrstuvwxyz"}
    if answer_format == "yes_no_maybe":
        mapping |= WORD_TO_LETTER
    return mapping


def read_answer(completion: str, answer_format: str, letters: str = LETTERS) -> str | None:
    """The letter lm-eval's `answer-regex` filter reads from a completion (None where it finds none), in Python."""
    found = re.findall(answer_regex(answer_format, letters), completion or "")
    if not found:
        return None
    last = found[-1]
    text = next((g for g in last if g), "") if isinstance(last, tuple) else last
    return answer_map(answer_format).get(text.strip().lower())


def task_letters(rows: list[dict[str, Any]]) -> str:
    """The option letters of a task's questions: A up to the last letter of its longest option list."""
    return LETTERS[: max(len(r["options"]) for r in rows)]


def _filters(answer_format: str, letters: str) -> list[dict[str, Any]]:
    """lm-eval `filter_list`: regex (last match), lowercase, map to a letter, take the first (only) response."""
    steps = [
        {"function": "regex", "regex_pattern": answer_regex(answer_format, letters), "group_select": -1, "fallback": INVALID},
        {"function": "lowercase"},
        {"function": "map", "mapping_dict": answer_map(answer_format), "default_value": INVALID},
        {"function": "take_first"},
    ]
    return [{"name": FILTER, "filter": steps}]


# --- writing ---------------------------------------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """YAML with multi-line strings (the prompt template) as literal blocks, so they read as the prompt reads."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") and value == value.rstrip(" ") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


@dataclass
class Export:
    """What an export wrote: its folder, tasks (name -> questions), groups (name -> members), the command to run."""

    out: Path
    tasks: dict[str, int]
    groups: dict[str, list[str]] = field(default_factory=dict)
    command: str = ""
    benchmarks: list[str] = field(default_factory=list)


def _check_out(out: Path) -> None:
    """Refuse to replace a folder that holds something other than a previous medreg export."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise MedregError(f"{out}: exists and is not a medreg export (no {MARKER}): choose a new or empty folder")


def _write_data(tmp: Path, records: list[dict[str, Any]], style: str) -> dict[tuple[str, str], tuple[str, int]]:
    """data/<benchmark>/<category>.jsonl under `tmp`; returns (benchmark, category) -> (relative path, rows)."""
    written = {}
    for (benchmark, category), rows in _groups(records).items():
        rel = f"data/{benchmark}/{category}.jsonl"
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        with (tmp / rel).open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(_data_record(r, style), ensure_ascii=False) + "\n")
        written[(benchmark, category)] = (rel, len(rows))
    return written


def _check_template(records: list[dict[str, Any]], style: str) -> None:
    """Render doc_to_text with lm-eval's own Jinja environment for every question; refuse if one differs from ours."""
    from lm_eval.utils import apply_template

    for r in records:
        doc = _data_record(r, style)
        if apply_template(doc_to_text(style, r["answer_format"]), doc) != doc["prompt"]:
            raise MedregError(f"{r['benchmark']}/{r['qid']}: the lm-eval template does not render medreg's {style} prompt (a bug)")


def _marker(tmp: Path, kind: str, version: str, style: str, tasks: dict[str, int]) -> None:
    info = {"format": kind, "split_version": version, "prompt": style, "tasks": tasks}
    (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def export_lm_eval(
    split: Any, out: Path, version: str, style: str = "strict", benchmarks: Iterable[str] | None = None, max_gen_toks: int = 2048
) -> Export:
    """Write lm-eval task YAML and their data to `out` (replacing a previous export there, atomically).

    `version`: the split's version, recorded in every task's metadata. `style`: medreg's prompt style. Data files are
    named by absolute path (lm-eval's `datasets.load_dataset("json", data_files=...)` resolves a relative one against
    the working directory, not the YAML), so export again after moving the folder.
    """
    from registry.io import atomic_path

    out = Path(out).resolve()
    _check_out(out)
    records = split_records(split, benchmarks)
    _check_template(records, style)
    tasks: dict[str, int] = {}
    groups: dict[str, list[str]] = {}
    meta = {"version": 1.0, "split_version": version, "prompt": style, "source": "medreg"}
    with atomic_path(out, directory=True) as tmp:
        data = _write_data(tmp, records, style)
        for (benchmark, category), (rel, n) in data.items():
            fmt = _answer_format(_groups(records)[(benchmark, category)], benchmark)
            name = task_name(benchmark, category)
            config = {
                "task": name,
                "task_alias": f"{benchmark} {category}",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"test": str(out / rel)}},
                "test_split": "test",
                "output_type": "generate_until",
                "doc_to_text": doc_to_text(style, fmt),
                "doc_to_target": "answer",
                "generation_kwargs": {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": max_gen_toks},
                "filter_list": _filters(fmt, task_letters(_groups(records)[(benchmark, category)])),
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
                "metadata": meta,
            }
            (tmp / f"{name}.yaml").write_text(_dump(config), encoding="utf-8")
            tasks[name] = n
            groups.setdefault(task_name(benchmark), []).append(name)
            groups.setdefault(task_name(category), []).append(name)
        groups[PREFIX] = sorted(g for g in groups if g not in (task_name(c) for c in CATEGORIES))
        for name, members in groups.items():
            config = {
                "group": name,
                "task": sorted(members) if name != PREFIX else members,
                "aggregate_metric_list": [{"metric": "exact_match", "filter_list": [FILTER], "aggregation": "mean", "weight_by_size": True}],
                "metadata": meta,
            }
            (tmp / f"{name}.yaml").write_text(_dump(config), encoding="utf-8")
        _marker(tmp, "lm-eval", version, style, tasks)
    first = next(iter(tasks))
    command = (
        f"lm_eval --model hf --model_args pretrained=MODEL --apply_chat_template --include_path {out} --tasks {first} "
        "--log_samples --output_path results"
    )
    return Export(out, tasks, groups, command, sorted({r["benchmark"] for r in records}))


INSPECT_FILE = "medreg_tasks.py"

_INSPECT_HEAD = '''"""medreg's reasoning/knowledge split as Inspect tasks, written by `medreg export inspect`: split {version}, prompt {style}.

    inspect eval {path}@{first} --model openai/gpt-4o-mini
    inspect eval {path}@{first} -T solver=multiple_choice    # Inspect's own multiple-choice prompt
    inspect eval {path}@{first} -T system="You are a doctor."

Each sample's input is medreg's {style} prompt (registry/prompts.py); `answer_regex` reads the letter with the pattern of
the lm-eval export's filter; `extractor`, where the medreg package is importable, grades with medreg's own extractor.
Data: data/<benchmark>/<category>.jsonl beside this file (the folder can be moved).
"""

from __future__ import annotations

import re
from pathlib import Path

from inspect_ai import Task, task
from inspect_ai.dataset import FieldSpec, MemoryDataset, json_dataset
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Scorer, Target, accuracy, choice, scorer, stderr
from inspect_ai.solver import TaskState, generate, multiple_choice, system_message

HERE = Path(__file__).parent
VERSION = {version!r}
PATTERNS = {patterns}
MAPS = {maps}
FIELDS = FieldSpec(
    input="prompt", target="answer", id="id", choices="choices",
    metadata=["benchmark", "qid", "category", "answer_format", "options", "p_reasoning", "category_source"],
)


def read_answer(completion: str, benchmark: str) -> str | None:
    """The answer letter: the last match of the benchmark's pattern, lowercased and mapped (as lm-eval's filter does)."""
    found = PATTERNS[benchmark].findall(completion or "")
    if not found:
        return None
    last = found[-1]
    text = next((g for g in last if g), "") if isinstance(last, tuple) else last
    return MAPS[benchmark].get(text.strip().lower())


@scorer(metrics=[accuracy(), stderr()])
def answer_regex() -> Scorer:
    """Correct when the letter the lm-eval export's regex reads is the gold letter."""

    async def score(state: TaskState, target: Target) -> Score:
        letter = read_answer(state.output.completion, state.metadata["benchmark"])
        return Score(value=CORRECT if letter == target.text else INCORRECT, answer=letter, explanation=state.output.completion)

    return score


@scorer(metrics=[accuracy(), stderr()])
def extractor() -> Scorer:
    """Correct when medreg's extractor (registry.prompts.extract_answer) reads the gold letter."""
    from registry.prompts import extract_answer

    async def score(state: TaskState, target: Target) -> Score:
        options = {{o["letter"]: o["text"] for o in state.metadata["options"]}}
        found = extract_answer(state.output.completion, options, state.metadata["answer_format"])
        value = CORRECT if found.answer == target.text else INCORRECT
        return Score(value=value, answer=found.answer, explanation=found.rule, metadata={{"parse_failed": found.parse_failed}})

    return score


def _has_medreg() -> bool:
    try:
        from registry.prompts import extract_answer  # noqa: F401
    except ImportError:
        return False
    return True


def _task(name: str, files: list[str], solver: str, system: str | None) -> Task:
    samples = [s for f in files for s in json_dataset(str(HERE / f), FIELDS)]
    if solver == "generate":
        plan, scorers = [generate()], [answer_regex(), *([extractor()] if _has_medreg() else [])]
    elif solver == "multiple_choice":
        plan, scorers = [multiple_choice()], [choice()]
    else:
        raise ValueError(f"solver must be generate or multiple_choice, not {{solver!r}}")
    if system:
        plan.insert(0, system_message(system))
    return Task(dataset=MemoryDataset(samples, name=name), solver=plan, scorer=scorers, name=name, version=1, metadata={{"split_version": VERSION}})
'''

_INSPECT_TASK = '''

@task
def {name}(solver: str = "generate", system: str | None = None) -> Task:
    """{doc}"""
    return _task({name!r}, {files!r}, solver, system)
'''


def export_inspect(split: Any, out: Path, version: str, style: str = "strict", benchmarks: Iterable[str] | None = None) -> Export:
    """Write `medreg_tasks.py` (Inspect tasks) and its data to `out` (replacing a previous export there, atomically).

    Tasks: `medreg_<benchmark>_<category>`, `medreg_<benchmark>`, `medreg_<category>` and `medreg`; each takes
    `-T solver=generate|multiple_choice` and `-T system=...`. The data is found beside the file, so the folder moves.
    """
    from registry.io import atomic_path

    out = Path(out).resolve()
    _check_out(out)
    records = split_records(split, benchmarks)
    if style not in STYLES:
        raise MedregError(f"--prompt: {style!r} is not one of {', '.join(STYLES)}")
    with atomic_path(out, directory=True) as tmp:
        data = _write_data(tmp, records, style)
        entries: dict[str, tuple[list[str], str]] = {}
        for (benchmark, category), (rel, n) in data.items():
            entries[task_name(benchmark, category)] = ([rel], f"{benchmark}, {category}-heavy questions ({n}).")
        for benchmark in sorted({b for b, _ in data}):
            files = [data[(benchmark, c)][0] for c in CATEGORIES if (benchmark, c) in data]
            entries[task_name(benchmark)] = (
                files,
                f"{benchmark}, every question ({sum(data[(benchmark, c)][1] for c in CATEGORIES if (benchmark, c) in data)}).",
            )
        for category in CATEGORIES:
            files = [rel for (_, c), (rel, _) in data.items() if c == category]
            if files:
                entries[task_name(category)] = (
                    files,
                    f"Every benchmark's {category}-heavy questions ({sum(n for (_, c), (_, n) in data.items() if c == category)}).",
                )
        entries[PREFIX] = ([rel for rel, _ in data.values()], f"Every question of the split ({len(records)}).")
        by_benchmark: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            by_benchmark.setdefault(r["benchmark"], []).append(r)
        readers = {b: (_answer_format(rows, b), task_letters(rows)) for b, rows in sorted(by_benchmark.items())}
        head = _INSPECT_HEAD.format(
            version=version,
            style=style,
            path=out / INSPECT_FILE,
            first=next(iter(entries)),
            patterns="{\n" + "".join(f"    {b!r}: re.compile({answer_regex(f, letters)!r}),\n" for b, (f, letters) in readers.items()) + "}",
            maps="{\n" + "".join(f"    {b!r}: {answer_map(f)!r},\n" for b, (f, _) in readers.items()) + "}",
        )
        body = "".join(_INSPECT_TASK.format(name=name, files=files, doc=doc) for name, (files, doc) in entries.items())
        (tmp / INSPECT_FILE).write_text(head + body, encoding="utf-8")
        counts = {name: sum(data[k][1] for k in data if data[k][0] in files) for name, (files, _) in entries.items()}
        _marker(tmp, "inspect", version, style, counts)
    first = next(iter(entries))
    return Export(out, counts, {}, f"inspect eval {out / INSPECT_FILE}@{first} --model MODEL", sorted({r["benchmark"] for r in records}))


# --- replaying our completions ---------------------------------------------------------------------------------------


def completions_by_question(predictions: Any, model: str | None = None) -> dict[tuple[str, str], str]:
    """(benchmark, qid) -> completion from a predictions table (a DataFrame or a parquet path), of one model."""
    import pandas as pd

    df = pd.read_parquet(predictions) if isinstance(predictions, str | Path) else predictions
    models = sorted(df["model"].unique())
    if model is None and len(models) > 1:
        raise MedregError(f"predictions hold {len(models)} models ({', '.join(models)}): say which with model=NAME")
    if model is not None:
        if model not in models:
            raise MedregError(f"predictions: no model {model!r} (models: {', '.join(models)})")
        df = df[df["model"] == model]
    return {(b, str(q)): c for b, q, c in zip(df["benchmark"], df["qid"], df["completion"], strict=True)}


_REPLAY_CLASS: Any = None


def register_replay_model() -> type:
    """Register `medreg-replay` with lm-eval (once) and return its class.

    The model answers every `generate_until` request with the stored completion of the request's question (the doc's
    benchmark and qid), and records the prompt it was given. Arguments: `completions` (a (benchmark, qid) -> text dict,
    Python API) or `predictions` (a predictions parquet file) with `model` (which model's rows, if several).
    """
    global _REPLAY_CLASS
    if _REPLAY_CLASS is not None:
        return _REPLAY_CLASS
    import lm_eval.models  # noqa: F401  (registers lm-eval's own models first: get_model loads them only into an empty registry)
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model

    class ReplayLM(LM):
        """Answers with stored completions, by question; scores nothing itself."""

        def __init__(
            self, completions: dict[tuple[str, str], str] | None = None, predictions: str | None = None, model: str | None = None, **_: Any
        ) -> None:
            super().__init__()
            if completions is None and predictions is None:
                raise MedregError(f"{REPLAY}: give predictions=<predictions.parquet> (and model=NAME) in --model_args")
            self.completions = completions if completions is not None else completions_by_question(predictions, model)
            self.prompts: dict[tuple[str, str], str] = {}

        def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
            out = []
            for request in requests:
                key = (request.doc["benchmark"], str(request.doc["qid"]))
                if key not in self.completions:
                    raise MedregError(f"{REPLAY}: no stored completion for {key[0]}/{key[1]}")
                self.prompts[key] = request.args[0]
                out.append(self.completions[key])
            return out

        def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
            raise MedregError(f"{REPLAY} replays generations only: use a generate_until task")

        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            raise MedregError(f"{REPLAY} replays generations only: use a generate_until task")

    register_model(REPLAY)(ReplayLM)
    _REPLAY_CLASS = ReplayLM
    return ReplayLM


@dataclass
class Parity:
    """lm-eval's exact_match next to our accuracy on the same completions, and every question where they disagree."""

    benchmark: str
    model: str
    style: str
    n: int
    ours: float  # mean of our `correct`
    lm_eval: float  # mean of lm-eval's exact_match (answer-regex filter), from its per-sample log
    lm_eval_reported: dict[str, float]  # lm-eval's own aggregated exact_match per task
    prompts_equal: int  # questions whose prompt lm-eval built equals ours
    hashes_equal: int | None  # questions whose prompt, as chat messages, has the predictions' prompt_hash (None: not checked)
    extracted_differently: int  # questions where the two read different letters (graded alike or not)
    differences: list[dict[str, Any]]  # the questions graded differently: qid, category, answer, ours, lm_eval, rule, why

    def lines(self) -> list[str]:
        """A short human report."""
        hashes = "" if self.hashes_equal is None else f", prompt hashes equal {self.hashes_equal}/{self.n}"
        head = (
            f"{self.benchmark} ({self.model}, prompt {self.style}): n={self.n} ours={self.ours:.4f} lm-eval={self.lm_eval:.4f}; "
            f"prompts equal {self.prompts_equal}/{self.n}{hashes}; letters differ on {self.extracted_differently}, "
            f"grades on {len(self.differences)}"
        )
        rows = [
            f"  {d['qid']} [{d['category']}] gold {d['answer']}: ours {d['ours']} ({d['rule']}), lm-eval {d['lm_eval']}: {d['why']}"
            for d in self.differences
        ]
        return [head, *rows]


def _why(ours: str | None, theirs: str | None, rule: str, completion: str) -> str:
    """Why the two readings differ, in words."""
    if ours is None and theirs is not None:
        return f"ours refuses ({rule}); the regex takes {theirs}"
    if ours is not None and theirs is None:
        return f"ours reads {ours} by '{rule}', a rule the regex lacks or reads otherwise"
    return f"both read a letter but different statements win (ours by '{rule}', the regex: the last match)"


def _chat_of(model: str) -> tuple[str, str | None] | None:
    """A catalog model's prompt style and system prompt (None for a model not in the catalog)."""
    from registry import catalog

    try:
        chat = catalog.model(model).chat
    except catalog.CatalogError:
        return None
    return chat.prompt, chat.system


def lm_eval_parity(
    predictions: Any,
    split: Any,
    benchmark: str,
    workdir: Path,
    model: str | None = None,
    style: str | None = None,
    log_dir: Path | None = None,
) -> Parity:
    """Score one benchmark's stored completions with lm-eval on our export, and compare with our `correct` per question.

    `predictions`: a predictions table (DataFrame or parquet path; `correct` 0/1 or boolean), `split`: the split (for
    the questions), `style`: the prompt style the completions were generated with (default: the catalog model's, else
    strict; `evaluate.prompt` overrides it in a run). For a catalog model, the prompt lm-eval built, sent as medreg
    sends it (the model's system prompt, then the user turn), is also checked against the predictions' `prompt_hash`.
    The export holds only the questions that have a completion. `log_dir`: also write lm-eval's per-sample log there
    (`samples_<task>_*.jsonl`, lm-eval's own format).
    """
    import lm_eval
    import pandas as pd
    from lm_eval.tasks import TaskManager

    from registry.prompts import prompt_hash

    df = pd.read_parquet(predictions) if isinstance(predictions, str | Path) else predictions
    names = sorted(df["model"].unique())
    if model is None:
        if len(names) != 1:
            raise MedregError(f"predictions hold {len(names)} models ({', '.join(names)}): say which")
        model = names[0]
    df = df[(df["model"] == model) & (df["benchmark"] == benchmark)].copy()
    if df.empty:
        raise MedregError(f"predictions: no rows of model {model} on benchmark {benchmark}")
    df["qid"] = df["qid"].astype(str)
    df["correct"] = df["correct"].astype(int)
    chat = _chat_of(model)
    style = style or (chat[0] if chat else "strict")
    records = split_records(split, [benchmark])
    wanted = set(df["qid"])
    records = [r for r in records if r["qid"] in wanted]
    missing = sorted(wanted - {r["qid"] for r in records})
    if missing:
        raise MedregError(f"split: {benchmark} has no question(s) {', '.join(missing[:10])} that the predictions grade")
    export = export_lm_eval(records, Path(workdir) / "lm-eval", "parity", style)
    replay = register_replay_model()(completions=completions_by_question(df, model))
    tasks = sorted(export.tasks)
    kwargs: dict[str, Any] = {}
    if log_dir is not None:
        from lm_eval.loggers import EvaluationTracker

        kwargs["evaluation_tracker"] = EvaluationTracker(output_path=str(log_dir))
    results = lm_eval.simple_evaluate(
        model=replay, tasks=tasks, task_manager=TaskManager(include_path=str(export.out), include_defaults=False), log_samples=True, **kwargs
    )
    if log_dir is not None:
        tracker = kwargs["evaluation_tracker"]
        samples = results["samples"]
        tracker.save_results_aggregated(results={k: v for k, v in results.items() if k != "samples"}, samples=samples)
        for name in results["configs"]:
            tracker.save_results_samples(task_name=name, samples=samples[name])
    theirs = {}
    for name in tasks:
        for s in results["samples"][name]:
            if s["filter"] == FILTER:
                theirs[str(s["doc"]["qid"])] = (s["filtered_resps"][0], int(s["exact_match"]))
    reported = {name: float(results["results"][name][f"exact_match,{FILTER}"]) for name in tasks}
    by_qid = {r["qid"]: r for r in records}
    differences = []
    prompts_equal, hashes_equal, extracted_differently = 0, 0, 0
    check_hashes = chat is not None and "prompt_hash" in df.columns
    for row in df.itertuples():
        letter, em = theirs[row.qid]
        letter = None if letter == INVALID else letter
        ours = row.extracted if isinstance(row.extracted, str) else None
        sent = replay.prompts.get((benchmark, row.qid))
        prompts_equal += sent == our_prompt(by_qid[row.qid], style)
        if check_hashes:
            messages = [*([{"role": "system", "content": chat[1]}] if chat[1] else []), {"role": "user", "content": sent}]
            hashes_equal += prompt_hash(messages) == row.prompt_hash
        extracted_differently += letter != ours
        if em != row.correct or letter != ours:
            differences.append(
                {
                    "qid": row.qid,
                    "category": row.category,
                    "answer": row.answer,
                    "ours": ours,
                    "lm_eval": letter,
                    "rule": row.extraction_rule,
                    "why": _why(ours, letter, row.extraction_rule, row.completion),
                    "graded_differently": em != row.correct,
                    "completion": row.completion,
                }
            )
    graded = [d for d in differences if d["graded_differently"]]
    n = len(df)
    lm_accuracy = sum(em for _, em in theirs.values()) / n
    hashes = hashes_equal if check_hashes else None
    return Parity(
        benchmark, model, style, n, float(df["correct"].mean()), lm_accuracy, reported, prompts_equal, hashes, extracted_differently, graded
    )


def inspect_replay(export: Path, task: str, completions: dict[tuple[str, str], str], log_dir: Path) -> Any:
    """Run an exported Inspect task with Inspect's `mockllm/model` answering each sample with its stored completion.

    Returns Inspect's EvalLog (also written to `log_dir`, readable by `inspect view`). A sample whose question has no
    stored completion is answered with an empty string.
    """
    import inspect_ai
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    by_prompt = {}
    for path in sorted((Path(export) / "data").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            key = (rec["benchmark"], rec["qid"])
            if key in completions:
                by_prompt[rec["prompt"]] = completions[key]

    def answer(messages: list[Any], tools: Any, tool_choice: Any, config: Any) -> ModelOutput:
        prompt = next(m.text for m in reversed(messages) if m.role == "user")
        output = ModelOutput.from_content(model="mockllm", content=by_prompt.get(prompt, ""))
        output.usage = ModelUsage(input_tokens=0, output_tokens=0, total_tokens=0)  # else mockllm counts with tiktoken (a download)
        return output

    model = get_model("mockllm/model", custom_outputs=answer)
    logs = inspect_ai.eval(f"{Path(export) / INSPECT_FILE}@{task}", model=model, log_dir=str(log_dir), display="none")
    return logs[0]


def lm_eval_cli(argv: list[str] | None = None) -> None:
    """lm-eval's command line (`lm_eval ARGS`) with `medreg-replay` registered; a MedregError is one line, status 2."""
    from registry.errors import EXIT_REFUSED

    register_replay_model()
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        cli_evaluate()
    except MedregError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":
    lm_eval_cli()
