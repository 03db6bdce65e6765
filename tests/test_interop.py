"""The split exported as lm-eval and Inspect tasks; lm-eval and Inspect scoring our stored completions (registry/interop.py)."""

import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from registry import interop
from registry.cli import main
from registry.errors import MedregError
from registry.prompts import extract_answer, user_prompt
from schemas.questions import OPTIONS
from tests.conftest import venv_env

QUESTIONS = [
    ("medqa", "1", "reasoning", "A man of 45 has crushing chest pain. Next step?", None, ["ECG", "Aspirin", "CT scan", "Discharge"], "A"),
    ("medqa", "2", "knowledge", "Which vitamin deficiency causes scurvy?", None, ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"], "B"),
    ("medqa", "3", "reasoning", "A child has 3 days of fever, then a rash. Diagnosis?", None, ["Measles", "Rubella", "Roseola", "Scarlet"], "C"),
    ("medqa", "4", "reasoning", "Palpitations, weight loss and a goitre. First test?", None, ["Cortisol", "Glucose", "ECG", "TSH"], "D"),
    ("medqa", "5", "knowledge", "Which nerve is injured in wrist drop?", None, ["Radial", "Ulnar", "Median", "Axillary"], "A"),
    ("pubmedqa", "10", "knowledge", "Does aspirin reduce the risk of stroke?", "100 patients took aspirin.", ["yes", "no", "maybe"], "A"),
    ("pubmedqa", "11", "knowledge", "Is coffee a cause of arrhythmia?", "500 coffee drinkers were followed.", ["yes", "no", "maybe"], "B"),
]
# One completion per question (strict prompt). medqa/2 is read by ours (the option's text after "answer is") and not by
# the regex: the one known difference; medqa/4 names two letters, which both refuse.
COMPLETIONS = {
    ("medqa", "1"): "Let me think step by step.\nChest pain needs an ECG first.\nThe answer is A.",
    ("medqa", "2"): "Scurvy is vitamin C deficiency. The correct answer is: Vitamin C",
    ("medqa", "3"): "Roseola fits best.\n\nB",
    ("medqa", "4"): "The answer is D or C.",
    ("medqa", "5"): "**Answer: A**",
    ("pubmedqa", "10"): "Yes, aspirin reduces risk.",
    ("pubmedqa", "11"): "The answer is maybe.",
}
LETTERS = "ABCD"


def _split() -> pa.Table:
    rows = [
        {
            "benchmark": b,
            "qid": q,
            "question": text,
            "context": context,
            "options": [{"letter": LETTERS[i], "text": t} for i, t in enumerate(options)],
            "answer": answer,
            "answer_format": "yes_no_maybe" if b == "pubmedqa" else "letter",
            "category": category,
            "p_reasoning": 0.8 if category == "reasoning" else 0.2,
            "category_source": "classifier",
        }
        for b, q, category, text, context, options, answer in QUESTIONS
    ]
    schema = pa.schema([(k, OPTIONS if k == "options" else pa.float64() if k == "p_reasoning" else pa.string()) for k in rows[0]])
    return pa.Table.from_pylist(rows, schema=schema)


def _predictions(model: str = "m") -> pd.DataFrame:
    """A predictions table graded by our extractor; `correct` and `parse_failed` are booleans (the newer schema)."""
    out = []
    for r in _split().to_pylist():
        options = {o["letter"]: o["text"] for o in r["options"]}
        completion = COMPLETIONS[(r["benchmark"], r["qid"])]
        ex = extract_answer(completion, options, r["answer_format"])
        out.append(
            {
                "model": model,
                "backend": "transformers",
                "benchmark": r["benchmark"],
                "qid": r["qid"],
                "category": r["category"],
                "answer": r["answer"],
                "completion": completion,
                "extracted": ex.answer,
                "correct": ex.answer == r["answer"],
                "parse_failed": ex.parse_failed,
                "extraction_rule": ex.rule,
            }
        )
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def split() -> pa.Table:
    return _split()


@pytest.fixture(scope="module")
def lm_export(split, tmp_path_factory):
    return interop.export_lm_eval(split, tmp_path_factory.mktemp("lm") / "tasks", "v-test", "strict")


def test_lm_eval_export_layout(lm_export):
    assert lm_export.tasks == {"medreg_medqa_knowledge": 2, "medreg_medqa_reasoning": 3, "medreg_pubmedqa_knowledge": 2}
    assert lm_export.groups["medreg_medqa"] == ["medreg_medqa_knowledge", "medreg_medqa_reasoning"]
    assert lm_export.groups["medreg_reasoning"] == ["medreg_medqa_reasoning"]
    assert lm_export.groups["medreg"] == ["medreg_medqa", "medreg_pubmedqa"]
    config = yaml.safe_load((lm_export.out / "medreg_medqa_reasoning.yaml").read_text())
    assert config["output_type"] == "generate_until" and config["doc_to_target"] == "answer"
    assert config["dataset_path"] == "json" and config["dataset_kwargs"]["data_files"]["test"] == str(lm_export.out / "data/medqa/reasoning.jsonl")
    assert config["generation_kwargs"]["until"] == [] and config["metadata"]["split_version"] == "v-test"
    assert [f["function"] for f in config["filter_list"][0]["filter"]] == ["regex", "lowercase", "map", "take_first"]
    rows = [json.loads(line) for line in (lm_export.out / "data/medqa/reasoning.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in rows] == ["1", "3", "4"] and rows[0]["choices"][0] == "ECG" and rows[2]["answer_index"] == 3
    assert "lm_eval" in lm_export.command and f"--include_path {lm_export.out}" in lm_export.command


@pytest.mark.parametrize("style", ["strict", "direct", "cot"])
def test_lm_eval_renders_our_prompt(split, tmp_path, style):
    """lm-eval, loading the exported YAML, builds exactly the user turn medreg sends, in every style."""
    from lm_eval.tasks import TaskManager

    export = interop.export_lm_eval(split, tmp_path / "tasks", "v", style)
    tasks = TaskManager(include_path=str(export.out), include_defaults=False).load(sorted(export.tasks))["tasks"]
    seen = 0
    for task in tasks.values():
        for doc in task.test_docs():
            row = {**doc, "options": {o["letter"]: o["text"] for o in doc["options"]}}
            assert task.doc_to_text(doc) == user_prompt(row, style)
            assert task.doc_to_target(doc) == doc["answer"]
            seen += 1
    assert seen == len(QUESTIONS)


def test_regex_reads_like_our_extractor():
    """Common answer forms read alike; the documented difference (an option's text, no letter) stays documented."""
    options = {"A": "ECG", "B": "Aspirin", "C": "CT scan", "D": "Discharge"}
    alike = [
        "The answer is A.",
        "The answer is **B**.",
        "answer: c.",
        "the answer is a fever",
        "\\boxed{D}",
        "<answer>B</answer>",
        "Final answer: (C)",
        "I think B is correct.",
        "C. CT scan",
        "Let me think.\n\nB",
        "A patient like this needs an ECG.",
        "The answer is A or B.",
        "<think>The answer is A</think>The answer is B.",
        "Answer: B\n\nC",
        "So the final answer is $\\boxed{C}$",
        "Answer: B, I think.",
        "",
    ]
    for text in alike:
        assert interop.read_answer(text, "letter", "ABCD") == extract_answer(text, options).answer, text
    ynm = {"A": "yes", "B": "no", "C": "maybe"}
    for text in ("Yes, it does.", "Answer: no", "The answer is C.", "yes or no", 'No, the answer is not "yes."', "No, no.", "No, I think not."):
        assert interop.read_answer(text, "yes_no_maybe", "ABC") == extract_answer(text, ynm, "yes_no_maybe").answer, text
    assert extract_answer("The correct answer is: Aspirin", options).answer == "B"
    assert interop.read_answer("The correct answer is: Aspirin", "letter") is None


def test_parity_finds_the_one_difference(split, tmp_path):
    preds = _predictions()
    parity = interop.lm_eval_parity(preds, split, "medqa", tmp_path, style="strict", log_dir=tmp_path / "logs")
    assert (parity.n, parity.prompts_equal, parity.hashes_equal, parity.extracted_differently) == (5, 5, None, 1)
    assert parity.ours == pytest.approx(3 / 5) and parity.lm_eval == pytest.approx(2 / 5)
    assert parity.lm_eval_reported == {"medreg_medqa_knowledge": pytest.approx(1 / 2), "medreg_medqa_reasoning": pytest.approx(1 / 3)}
    assert [(d["qid"], d["ours"], d["lm_eval"]) for d in parity.differences] == [("2", "B", None)]
    assert "answer phrase" in parity.differences[0]["rule"] and "medqa" in parity.lines()[0]
    samples = sorted((tmp_path / "logs").rglob("samples_medreg_medqa_reasoning_*.jsonl"))
    assert len(samples) == 1 and len(samples[0].read_text().splitlines()) == 3


def test_parity_of_a_catalog_model_checks_the_prompt_hash(split, tmp_path):
    """A catalog model: its own prompt style (direct), and lm-eval's prompt hashes to the predictions' prompt_hash."""
    from registry import catalog
    from registry.prompts import build_chat, prompt_hash

    name = "smollm2-135m-instruct"
    preds = pd.concat([_predictions(name), _predictions("other")])
    rows = {(r["benchmark"], r["qid"]): r for r in _split().to_pylist()}
    chat = catalog.model(name).chat
    preds["prompt_hash"] = [
        prompt_hash(build_chat({**rows[(b, q)], "options": {o["letter"]: o["text"] for o in rows[(b, q)]["options"]}}, chat))
        for b, q in zip(preds["benchmark"], preds["qid"], strict=True)
    ]
    parity = interop.lm_eval_parity(preds, split, "pubmedqa", tmp_path, model=name)
    assert (parity.style, parity.n, parity.prompts_equal, parity.hashes_equal) == ("direct", 2, 2, 2)
    assert (parity.ours, parity.lm_eval, parity.extracted_differently, parity.differences) == (0.5, 0.5, 0, [])
    preds.loc[preds["qid"] == "10", "prompt_hash"] = "0" * 16
    assert interop.lm_eval_parity(preds, split, "pubmedqa", tmp_path, model=name).hashes_equal == 1
    with pytest.raises(MedregError, match="2 models"):
        interop.lm_eval_parity(preds, split, "pubmedqa", tmp_path)


def test_lm_eval_command_line_runs_the_export(lm_export, tmp_path):
    """`lm_eval` itself (its command line, `medreg-replay` registered) on the exported task."""
    preds = tmp_path / "predictions.parquet"
    _predictions().to_parquet(preds)
    cmd = [sys.executable, "-m", "registry.interop", "--model", "medreg-replay", "--model_args", f"predictions={preds},model=m"]
    cmd += ["--include_path", str(lm_export.out), "--tasks", "medreg_medqa_reasoning", "--output_path", str(tmp_path / "out"), "--log_samples"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=venv_env() | {"HF_DATASETS_CACHE": str(tmp_path / "hf")}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert results["results"]["medreg_medqa_reasoning"]["exact_match,answer-regex"] == pytest.approx(1 / 3)
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_*.jsonl")).read_text().splitlines()]
    assert sorted((s["doc"]["qid"], s["filtered_resps"][0]) for s in samples) == [("1", "A"), ("3", "B"), ("4", "[invalid]")]


def test_inspect_replay_scores_like_lm_eval_and_like_us(split, tmp_path):
    """Inspect on the exported task, mockllm answering with our completions: its regex scorer gives lm-eval's accuracy,
    its medreg scorer ours; the log is a normal Inspect log."""
    from inspect_ai.log import read_eval_log

    export = interop.export_inspect(split, tmp_path / "inspect", "v-test", "strict")
    assert export.tasks["medreg_medqa"] == 5 and export.tasks["medreg"] == 7 and export.tasks["medreg_knowledge"] == 4
    completions = interop.completions_by_question(_predictions())
    log = interop.inspect_replay(export.out, "medreg_medqa", completions, tmp_path / "logs")
    assert log.status == "success" and len(log.samples) == 5
    scores = {s.name: s.metrics["accuracy"].value for s in log.results.scores}
    assert scores == {"answer_regex": pytest.approx(2 / 5), "extractor": pytest.approx(3 / 5)}
    by_id = {s.id: s for s in log.samples}
    assert by_id["medqa/2"].scores["extractor"].answer == "B" and by_id["medqa/2"].scores["answer_regex"].answer is None
    _, _, _, question, _, options, _ = QUESTIONS[0]
    row = {"question": question, "context": None, "options": dict(zip(LETTERS, options, strict=True)), "answer_format": "letter"}
    assert by_id["medqa/1"].input == user_prompt(row, "strict")
    assert len(read_eval_log(log.location).samples) == 5


def test_export_refuses_a_foreign_folder_and_replaces_its_own(split, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(MedregError, match="not a medreg export"):
        interop.export_lm_eval(split, foreign, "v")
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "tasks"
    interop.export_lm_eval(split, out, "v1", benchmarks=["medqa", "pubmedqa"])
    interop.export_inspect(split, out, "v2", benchmarks=["pubmedqa"])
    assert sorted(p.name for p in out.iterdir()) == ["data", "medreg-export.json", "medreg_tasks.py"]
    with pytest.raises(MedregError, match="nejm not in the split"):
        interop.export_lm_eval(split, out, "v", benchmarks=["nejm"])


def test_cli_export(split, tmp_path, monkeypatch):
    (tmp_path / "data/splits").mkdir(parents=True)
    nejm = split.slice(0, 1).to_pylist()[0] | {"benchmark": "nejm", "qid": "n1"}  # a benchmark whose terms forbid redistribution
    pq.write_table(pa.concat_tables([split, pa.Table.from_pylist([nejm], schema=split.schema)]), tmp_path / "data/splits/labels.parquet")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    env = venv_env()
    for cmd in (["git", "init", "-q"], ["git", "add", "dvc.yaml"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", "lm-eval", "out", "--benchmarks", "medqa", "--prompt", "cot"])
    assert result.exit_code == 0, result.output
    assert "medreg_medqa_reasoning" in result.output and "lm_eval --model hf" in result.output
    assert json.loads((tmp_path / "out/medreg-export.json").read_text())["prompt"] == "cot"
    result = CliRunner().invoke(main, ["export", "inspect", "insp"])
    assert result.exit_code == 2 and "refusing to export" in result.output and "nejm" in result.output and not (tmp_path / "insp").exists()
    result = CliRunner().invoke(main, ["export", "inspect", "insp", "--drop-restricted"])
    assert result.exit_code == 0 and "inspect eval" in result.output and "nejm" in result.output, result.output
    assert "medreg_nejm" not in (tmp_path / "insp/medreg_tasks.py").read_text()
    result = CliRunner().invoke(main, ["export", "lm-eval", "all", "--include-restricted"])
    assert result.exit_code == 0 and (tmp_path / "all/medreg_nejm_reasoning.yaml").is_file()
    result = CliRunner().invoke(main, ["export", "lm-eval", "out", "--benchmarks", "medqa,nejmx"])
    assert result.exit_code == 2 and "nejmx not in the split" in result.output
