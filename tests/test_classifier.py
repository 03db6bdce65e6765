import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from registry import catalog, classifier
from registry.cli import main
from registry.io import load
from schemas.splits import LabelsSchema

from .conftest import DEMO, MIRROR, ROOT, fast_classifier, run


def _workdir(path: Path, ingest: dict | None = None, classifier_params: dict | None = None, **env: str) -> Path:
    """A directory where the stages run on their own copy of params.yaml and the demo inputs."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(DEMO, path / "demo")
    shutil.copy(ROOT / "dvc.yaml", path / "dvc.yaml")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["ingest"].update(demo_dir="demo", **(ingest or {}))
    fast_classifier(p["classifier"]).update({"select": "minilm-finetune"} | (classifier_params or {}))
    (path / "params.yaml").write_text(yaml.safe_dump(p))
    for stage in ("ingest", "train_classifier"):
        result = run(["python", "-m", f"stages.{stage}"], path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The demo's classifier with the fine-tuned encoder chosen (the pipeline's own choice is a cheaper candidate)."""
    return _workdir(tmp_path_factory.mktemp("clf") / "a")


def test_question_text_modes():
    assert classifier.question_text("Q?", {"A": "x", "B": "y"}) == "Q?"
    assert classifier.question_text("Q?", {"A": "x", "B": "y"}, "question_options") == "Q?\nA. x\nB. y"
    assert classifier.question_text("Q?", '{"A": "x"}', "question_options") == "Q?\nA. x"
    assert classifier.question_text("Q?", [{"letter": "A", "text": "x"}], "question_options") == "Q?\nA. x"
    for none in (None, "null", "{}", float("nan"), []):  # no options: the question alone
        assert classifier.question_text("Q?", none, "question_options") == "Q?"


def test_folds_are_seeded_and_stratified():
    y = np.array([1] * 300 + [0] * 100)
    a = classifier.folds_of(y, 5, 1)
    assert np.array_equal(a, classifier.folds_of(y, 5, 1)) and not np.array_equal(a, classifier.folds_of(y, 5, 2))
    assert sorted(np.unique(a)) == [1, 2, 3, 4, 5]
    for k in range(1, 6):  # every fold: 80 rows, 60 reasoning and 20 knowledge
        assert (a == k).sum() == 80 and y[a == k].sum() == 60


def test_tuned_threshold_maximises_macro_f1():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    p = np.array([0.1, 0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 0.95])
    t = classifier.tune_threshold(y, p)
    assert 0.6 < t <= 0.65 and classifier.macro_f1(y, p, t) == 1.0


def test_expected_calibration_error_by_hand():
    y = np.array([0, 1, 1, 1])
    p = np.array([0.05, 0.95, 0.95, 0.55])  # bin 0: |0 - .05|, bin 9: |1 - .95| x 2, bin 5: |1 - .55|
    assert classifier.expected_calibration_error(y, p) == pytest.approx((0.05 + 0.1 + 0.45) / 4)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibration_lowers_ece_of_an_overconfident_model(method):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, 4000)  # the real P(reasoning)
    y = (rng.uniform(size=truth.size) < truth).astype(int)
    logit = np.log(truth / (1 - truth))
    p = 1 / (1 + np.exp(-3 * logit - 1))  # overconfident and shifted towards reasoning
    fold = classifier.folds_of(y, 5, 0)
    raw, calibrated = (
        classifier.expected_calibration_error(y, p),
        classifier.expected_calibration_error(y, classifier.cross_calibrated(p, y, fold, method)),
    )
    assert raw > 0.1 and calibrated < 0.03
    fitted = classifier.Calibrator(method).fit(p, y)
    again = classifier.Calibrator.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert np.allclose(again(p), fitted(p)) and np.all(np.diff(fitted(np.sort(p))) >= -1e-12)  # monotone, survives JSON


def test_out_of_fold_predictions_come_from_models_that_did_not_see_the_row():
    """A 1-nearest-neighbour-like head would score its own row perfectly; out of fold, label noise shows."""
    from registry.params import Candidate

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"question": ["x" * int(n) for n in rng.integers(10, 400, 200)]})
    y = rng.integers(0, 2, 200)  # labels unrelated to length
    spec = Candidate(kind="length")
    x = classifier.inputs(spec, frame)
    p = classifier.out_of_fold(spec, x, y, classifier.folds_of(y, 5, 0), seed=0)
    assert 0.3 < classifier.evaluate(y, p, 0.5)["roc_auc"] < 0.7


def test_an_ensemble_gives_probabilities_and_survives_save_and_load(tmp_path):
    from registry.params import Candidate

    frame = pd.DataFrame({"question": ["Define X?", "What is Y?", "A 54-year-old man has pain. BP 150/90 mm Hg. Next step?"] * 10})
    y = np.array([0, 0, 1] * 10)
    members = {}
    for name, spec in (("length", Candidate(kind="length")), ("tfidf", Candidate(kind="tfidf", C=100.0)), ("features", Candidate(kind="features"))):
        members[name] = (spec, classifier.head(spec, 0).fit(classifier.inputs(spec, frame), y))
    model = classifier.LabelingModel(
        members, classifier.Calibrator("sigmoid").fit(np.r_[0.2, 0.3, 0.8, 0.9], np.r_[0, 0, 1, 1]), 0.5, {"chosen": "ensemble"}
    )
    p = model.predict_proba(frame)
    assert np.all((p >= 0) & (p <= 1)) and p[2] > p[0]
    by_hand = np.mean([fitted.predict_proba(classifier.inputs(spec, frame))[:, 1] for spec, fitted in members.values()], axis=0)
    assert np.allclose(p, model.calibrator(by_hand))
    model.save(tmp_path / "m", "card")
    loaded = classifier.LabelingModel.load(tmp_path / "m")
    assert list(loaded.members) == ["length", "tfidf", "features"] and np.allclose(loaded.predict_proba(frame), p)
    labeled = classifier.categorise(frame, loaded)
    assert labeled["category"].tolist()[:3] == ["knowledge", "knowledge", "reasoning"]
    assert (labeled.threshold == 0.5).all() and np.allclose(labeled.p_reasoning, p)  # the threshold the model was built with
    assert labeled["category"].tolist() == ["reasoning" if q >= 0.5 else "knowledge" for q in labeled.p_reasoning]


def test_train_stage_cross_validates_every_candidate_and_refits_on_every_label(trained):
    questions = load("questions", trained)
    labeled = questions[questions.expert_category.notna()].reset_index(drop=True)
    meta = json.loads((trained / "models/classifier/medreg.json").read_text())
    assert meta["chosen"] == "minilm-finetune" and meta["n_fit"] == len(labeled) and 0 < meta["threshold"] < 1
    assert meta["training_labels"] == {"source": ["demo"], "benchmarks": labeled.benchmark.value_counts().sort_index().to_dict(), "n": len(labeled)}
    assert (trained / "models/classifier/members/minilm-finetune/model.safetensors").exists()
    cv = load("classifier_cv", trained)
    assert set(cv.candidate) == {"length", "features", "tfidf", "minilm-finetune", "ensemble"}
    assert (cv.groupby("candidate").fold.apply(sorted).apply(list) == [[1, 2, 3, 4, 5]] * 5).all()
    assert (cv.groupby("candidate").n.sum() == len(labeled)).all()  # the folds partition the labeled rows
    assert cv[cv.chosen].candidate.unique().tolist() == ["minilm-finetune"] and not cv[cv.candidate == "length"].selectable.any()
    metrics = json.loads((trained / "data/metrics/classifier.json").read_text())
    for name, summary in metrics["cv"].items():  # metrics = mean and sd over the table's folds
        rows = cv[cv.candidate == name]
        assert summary["macro_f1_mean"] == pytest.approx(rows.macro_f1.mean()) and summary["accuracy_sd"] == pytest.approx(rows.accuracy.std())
    best_two = sorted(["features", "tfidf", "minilm-finetune"], key=lambda n: -metrics["cv"][n]["macro_f1_mean"])[:2]
    assert cv[cv.candidate == "ensemble"].members.iloc[0] == ",".join(best_two)
    split = load("classifier_split", trained)
    assert len(split) == len(labeled) and split.p_reasoning_oof.between(0, 1).all()
    # pooled out-of-fold metrics, by hand: each labeled row's P(reasoning) against the threshold, against its expert label
    oof = split.merge(labeled[["benchmark", "qid", "expert_category"]], on=["benchmark", "qid"], validate="one_to_one")
    truth, pred = oof.expert_category == "reasoning", oof.p_reasoning_oof >= meta["threshold"]
    assert len(oof) == len(labeled) and metrics["threshold"] == meta["threshold"]
    assert metrics["accuracy"] == pytest.approx((truth == pred).mean())
    assert metrics["confusion_matrix"] == {
        "labels": ["knowledge", "reasoning"],
        "rows_true_cols_pred": [[int((~truth & ~pred).sum()), int((~truth & pred).sum())], [int((truth & ~pred).sum()), int((truth & pred).sum())]],
    }
    card = (trained / "models/classifier/README.md").read_text()
    assert "minilm-finetune (chosen)" in card and f"refit on all {len(labeled)} labeled" in card.replace("\n", " ")
    live = json.loads((trained / "dvclive/train_classifier/metrics.json").read_text())
    assert live["step"] == 5 and "minilm-finetune" in live
    assert (trained / "data/plots/classifier/calibration.csv").exists()


def test_refit_of_a_logistic_candidate_is_the_fit_on_all_labeled_rows(tmp_path):
    """select: features: the saved head equals a logistic regression fit here on every labeled question."""
    work = _workdir(tmp_path / "f", classifier_params={"select": "features", "compare": ["length", "features"]})
    import joblib

    from registry.params import Candidate

    questions = load("questions", work)
    labeled = questions[questions.expert_category.notna()].reset_index(drop=True)
    y = (labeled.expert_category == "reasoning").astype(int).to_numpy()
    spec = Candidate(kind="features")
    expected = classifier.head(spec, 0).fit(classifier.construct_features(labeled), y)
    saved = joblib.load(work / "models/classifier/members/features/head.joblib")
    assert np.allclose(saved.named_steps["logistic"].coef_, expected.named_steps["logistic"].coef_)
    assert np.allclose(saved.named_steps["scale"].mean_, classifier.construct_features(labeled).mean(axis=0))


def _digests(work: Path) -> dict[str, str]:
    files = sorted(p for p in (work / "models/classifier").rglob("*") if p.is_file())
    files += [work / "data/classifier/split.parquet", work / "data/classifier/cv.parquet", work / "data/splits/labels.parquet"]
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
    assert "models/classifier/members/minilm-finetune/model.safetensors" in first and first == second


SAVE_TFIDF = """
import sys, numpy as np, pandas as pd
from registry import classifier
from registry.params import Candidate
frame = pd.DataFrame({"question": [f"case {i} of {'pain fever cough rash'.split()[i % 4]} and more" for i in range(40)]})
spec = Candidate(kind="tfidf")
fitted = classifier.head(spec, 0).fit(classifier.inputs(spec, frame), np.arange(40) % 2)
classifier.LabelingModel({"tfidf": (spec, fitted)}, classifier.Calibrator("none"), 0.5, {}).save(sys.argv[1], "")
"""


def test_a_saved_tfidf_head_has_the_same_bytes_under_any_hash_seed(tmp_path):
    """String hashing changes per process (PYTHONHASHSEED); the pickled vocabulary must not."""
    for seed in ("1", "2"):
        result = run(["python", "-c", SAVE_TFIDF, str(tmp_path / seed)], ROOT, PYTHONHASHSEED=seed)
        assert result.returncode == 0, result.stderr
    first, second = ((tmp_path / seed / "members/tfidf/head.joblib").read_bytes() for seed in ("1", "2"))
    assert first == second


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
    threshold = json.loads((trained / "models/classifier/medreg.json").read_text())["threshold"]  # the saved model's
    assert (labels.threshold == threshold).all()
    assert ((labels.p_reasoning >= threshold) == (labels.predicted_category == "reasoning")).all()
    assert expert.fold.notna().all() and labels[labels.expert_category.isna()].fold.isna().all()
    metrics = json.loads((trained / "data/metrics/splits.json").read_text())
    assert metrics["reasoning_share"] == pytest.approx((labels.category == "reasoning").mean(), abs=1e-4)
    assert set(metrics["reasoning_share_by_benchmark"]) == set(questions.benchmark)
    for benchmark, s in metrics["reasoning_share_classifier_only_by_benchmark"].items():
        rows = labels[labels.benchmark == benchmark]
        assert s["n"] == len(rows) and s["share"] == pytest.approx((rows.predicted_category == "reasoning").mean(), abs=1e-4)
        assert s["ci_low"] <= s["share"] <= s["ci_high"] and s["ci_low"] < s["ci_high"]  # Wilson: never collapses, even at 0 or 1
    assert metrics["study_reasoning_share"] == 0.328
    assert set(metrics["benchmarks_not_ingested"]) == set(catalog.benchmarks()) - set(questions.benchmark)
    oof = load("classifier_split", trained).merge(expert, on=["benchmark", "qid"])
    agree = ((oof.p_reasoning_oof >= oof.threshold) == (oof.expert_category == "reasoning")).mean()
    assert metrics["expert_agreement_cv"] == pytest.approx(agree, abs=1e-4)


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
    out = CliRunner().invoke(main, ["classify", str(src), "-o", str(tmp_path / "out.jsonl"), "--no-quantize"])
    assert out.exit_code == 0, out.output
    got = pd.read_json(tmp_path / "out.jsonl", lines=True, dtype=False)
    assert list(got.id) == ["a", "b", "c"] and list(got.question) == list(df.question)
    assert got.p_reasoning.between(0, 1).all()
    threshold = json.loads((trained / "models/classifier/medreg.json").read_text())["threshold"]  # what the saved model labels at
    assert 0 < threshold < 1 and (got.threshold == threshold).all()
    for row in got.itertuples():  # each row: reasoning exactly when its P(reasoning) reaches the saved threshold
        assert row.category == ("reasoning" if row.p_reasoning >= threshold else "knowledge"), row
    share = sum(row.p_reasoning >= threshold for row in got.itertuples()) / 3
    assert f"wrote 3 rows to {tmp_path / 'out.jsonl'}: {share:.1%} reasoning" in out.output


def test_classify_bad_inputs_name_the_problem(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(trained)
    (tmp_path / "nocol.csv").write_text("id,text\n1,hello\n")
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "nocol.csv"), "-o", str(tmp_path / "o.parquet")])
    assert out.exit_code != 0 and "no 'question' column" in out.output
    (tmp_path / "empty.jsonl").write_text('{"question": "ok?"}\n{"question": "  "}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "empty.jsonl"), "-o", str(tmp_path / "o.parquet")])
    assert out.exit_code != 0 and "row(s) 2: field 'question' is empty" in out.output
    assert not (tmp_path / "o.parquet").exists()
    (tmp_path / "ok.jsonl").write_text('{"question": "ok?"}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "ok.jsonl"), "-o", str(tmp_path / "o.parquet"), "--model", str(tmp_path)])
    assert out.exit_code == 2 and "not a medreg classifier" in out.output
    (tmp_path / "broken.jsonl").write_text('{"question": "ok?"}\n{"question": "Unterminated\n{"question": "fine?"}\n')
    out = CliRunner().invoke(main, ["classify", str(tmp_path / "broken.jsonl"), "-o", str(tmp_path / "o.parquet")])
    assert out.exit_code == 2 and f"{tmp_path / 'broken.jsonl'}: line 2: not valid JSON: Unterminated string starting at (column 14)" in out.output
    assert not (tmp_path / "o.parquet").exists()


def test_mirror_classifier_beats_length_and_majority(tmp_path):
    """On the 1,149 real expert labels: the chosen candidate beats the length-only row and the majority class out of fold."""
    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    ingest = {"source": "mirror", "mirror_dir": str(MIRROR), "benchmarks": ["medxpertqa"]}
    work = _workdir(tmp_path / "m", ingest=ingest, classifier_params={"select": "best", "compare": ["length", "features", "tfidf"]})
    metrics = json.loads((work / "data/metrics/classifier.json").read_text())
    assert metrics["n"] == 1149 and metrics["chosen"] in ("features", "tfidf", "ensemble")
    assert metrics["cv"][metrics["chosen"]]["macro_f1_mean"] > metrics["cv"]["length"]["macro_f1_mean"]
    assert metrics["accuracy"] >= metrics["majority_baseline"] + 0.03 and metrics["macro_f1"] >= 0.7 and metrics["roc_auc"] >= 0.78
    assert metrics["ece"] < 0.05
