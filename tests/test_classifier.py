import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from registry import classifier
from registry.cli import main
from registry.io import load
from registry.params import Split
from schemas.splits import LabelsSchema

from .conftest import DEMO, MIRROR, ROOT, run

FAST = {"max_length": 64, "epochs": 2, "batch_size": 8}


def _workdir(path: Path, ingest: dict | None = None, params: dict | None = None, **env: str) -> Path:
    """A directory where the stages run on their own copy of params.yaml and the demo inputs."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO, path / "demo")
    shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["ingest"].update(demo_dir="demo", **(ingest or {}))
    p["classifier"].update(params or FAST)
    (path / "params.yaml").write_text(yaml.safe_dump(p))
    for stage in ("ingest", "train_classifier"):
        result = run(["python", "-m", f"stages.{stage}"], path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return _workdir(tmp_path_factory.mktemp("clf") / "a")


def test_question_text_modes():
    assert classifier.question_text("Q?", {"A": "x", "B": "y"}) == "Q?"
    assert classifier.question_text("Q?", {"A": "x", "B": "y"}, "question_options") == "Q?\nA. x\nB. y"
    assert classifier.question_text("Q?", '{"A": "x"}', "question_options") == "Q?\nA. x"


def test_split_is_seeded_and_stratified():
    labels = pd.Series(["reasoning"] * 300 + ["knowledge"] * 100)
    fractions = Split(train=0.7, val=0.15, test=0.15)
    a = classifier.split_labeled(labels, fractions, 1)
    assert a.equals(classifier.split_labeled(labels, fractions, 1))
    assert not a.equals(classifier.split_labeled(labels, fractions, 2))
    for name, n in (("train", 280), ("val", 60), ("test", 60)):
        part = labels[a == name]
        assert abs(len(part) - n) <= 1 and (part == "reasoning").mean() == pytest.approx(0.75, abs=0.02)


def test_tuned_threshold_maximises_validation_macro_f1():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95])
    t = classifier.tune_threshold(y, p)
    assert 0.6 < t <= 0.65 and classifier.macro_f1(y, p, t) == 1.0


def test_train_stage_writes_model_card_metrics_and_live_logs(trained):
    model = trained / "models/classifier"
    meta = json.loads((model / "medreg.json").read_text())
    assert meta["labels"] == ["knowledge", "reasoning"] and 0 < meta["threshold"] < 1
    assert "class-weighted" in (model / "README.md").read_text()
    metrics = json.loads((trained / "data/metrics/classifier.json").read_text())
    for key in ("accuracy", "macro_f1", "roc_auc", "majority_baseline", "per_class", "confusion_matrix"):
        assert key in metrics
    assert sum(map(sum, metrics["confusion_matrix"]["rows_true_cols_pred"])) == metrics["n"]["test"]
    live = json.loads((trained / "dvclive/train_classifier/metrics.json").read_text())
    assert live["step"] == FAST["epochs"] and "val_roc_auc" in live and "test_macro_f1" in live
    assert (trained / "data/plots/classifier/precision_recall.csv").exists()
    split = load("classifier_split", trained)
    assert split.split.value_counts().to_dict().keys() == {"train", "val", "test"}


def _digests(work: Path) -> dict[str, str]:
    files = sorted(p for p in (work / "models/classifier").rglob("*") if p.is_file())
    files += [work / "data/classifier/split.parquet", work / "data/splits/labels.parquet"]
    return {p.relative_to(work).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_two_trainings_write_identical_files(trained, tmp_path):
    """Same params, seed and thread count: every byte of the model, its split and the labels is the same.

    The second run has the Hub switched on (its base model is packaged, so nothing is fetched): run settings stay out of the files.
    """
    again = _workdir(tmp_path / "b", HF_HUB_OFFLINE="0")
    for work in (trained, again):
        result = run(["python", "-m", "stages.label"], work)
        assert result.returncode == 0, result.stderr
    first, second = _digests(trained), _digests(again)
    assert "models/classifier/model.safetensors" in first and first == second


def test_label_stage_labels_every_question(trained):
    result = run(["python", "-m", "stages.label"], trained)
    assert result.returncode == 0, result.stderr
    labels = load("splits", trained)
    questions = load("questions", trained)
    LabelsSchema.validate(labels)
    assert len(labels) == len(questions)
    expert = labels[labels.expert_category.notna()]
    assert (expert.category_source == "expert").all() and (expert.category == expert.expert_category).all()
    assert (labels[labels.expert_category.isna()].category_source == "classifier").all()
    assert expert.classifier_split.notna().all() and labels[labels.expert_category.isna()].classifier_split.isna().all()
    metrics = json.loads((trained / "data/metrics/splits.json").read_text())
    assert metrics["reasoning_share"] == pytest.approx((labels.category == "reasoning").mean(), abs=1e-4)
    assert set(metrics["reasoning_share_by_benchmark"]) == set(questions.benchmark)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".parquet"])
def test_classify_any_table_keeps_columns(trained, tmp_path, suffix, monkeypatch):
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "question": [
                "What is the capital of the kidney?",
                "A 54-year-old man has crushing chest pain radiating to the left arm. What is the next step?",
                "Why?",
            ],
        }
    )
    src = tmp_path / f"in{suffix}"
    {
        ".csv": lambda: df.to_csv(src, index=False),
        ".jsonl": lambda: df.to_json(src, orient="records", lines=True),
        ".json": lambda: df.to_json(src, orient="records", indent=2),  # a JSON array of records
        ".parquet": lambda: df.to_parquet(src),
    }[suffix]()
    monkeypatch.chdir(trained)
    out = CliRunner().invoke(main, ["classify", str(src), str(tmp_path / "out.jsonl"), "--no-quantize"])
    assert out.exit_code == 0, out.output
    got = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert list(got.id) == ["a", "b", "c"] and got.category.isin(["reasoning", "knowledge"]).all()
    assert got.p_reasoning.between(0, 1).all()


def test_classify_bad_inputs_name_the_problem(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained)
    (tmp_path / "nocol.csv").write_text("id,text\n1,hello\n")
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "nocol.csv"), str(tmp_path / "o.parquet")])
    assert out.exit_code != 0 and "no 'question' column" in out.output
    (tmp_path / "empty.jsonl").write_text('{"question": "ok?"}\n{"question": "  "}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "empty.jsonl"), str(tmp_path / "o.parquet")])
    assert out.exit_code != 0 and "row(s) 2: field 'question' is empty" in out.output
    assert not (tmp_path / "o.parquet").exists()
    (tmp_path / "ok.jsonl").write_text('{"question": "ok?"}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "ok.jsonl"), str(tmp_path / "o.parquet"), "--model", str(tmp_path)])
    assert out.exit_code == 2 and "not a medreg classifier" in out.output
    (tmp_path / "broken.jsonl").write_text('{"question": "ok?"}\n{"question": "Unterminated\n{"question": "fine?"}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "broken.jsonl"), str(tmp_path / "o.parquet")])
    assert out.exit_code == 2 and f"{tmp_path / 'broken.jsonl'}: line 2: not valid JSON: Unterminated string starting at (column 14)" in out.output
    assert not (tmp_path / "o.parquet").exists()


def test_mirror_classifier_beats_majority_baseline(tmp_path):
    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    work = _workdir(
        tmp_path / "m", ingest={"source": "mirror", "mirror_dir": str(MIRROR), "benchmarks": ["medxpertqa"]}, params={"max_length": 128, "epochs": 3}
    )
    metrics = json.loads((work / "data/metrics/classifier.json").read_text())
    assert metrics["n"]["test"] >= 150
    assert metrics["accuracy"] >= metrics["majority_baseline"] + 0.03
    assert metrics["macro_f1"] >= 0.6
