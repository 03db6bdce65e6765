import pytest
import yaml

from registry import catalog
from registry.params import load_params

from .conftest import ROOT


def _params(tmp_path, change):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    change(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.evaluate.models and params.classifier.cv.folds >= 2 and "pubmedbert" not in params.classifier.compare


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["evaluate"]["questions"].update(limit=-1), "evaluate.questions.limit: Input should be greater than 0 (got -1)"),
        (lambda p: p["evaluate"]["questions"].update(limit=0), "evaluate.questions.limit: Input should be greater than 0 (got 0)"),
        (lambda p: p["classifier"]["cv"].update(folds=1), "classifier.cv.folds: Input should be greater than or equal to 2 (got 1)"),
        (lambda p: p["classifier"]["cv"].pop("seed"), "classifier.cv.seed: required key missing"),
        (lambda p: p["classifier"].update(compare=["tfidf", "bert"]), "classifier.compare: must list distinct candidates of classifier.candidates"),
        (lambda p: p["classifier"].update(select="svm"), "select: must be best, ensemble or a compared candidate"),
        (lambda p: p["classifier"].update(select="ensemble", ensemble={"size": 0}), "select: ensemble needs ensemble.size >= 2"),
        (lambda p: p["classifier"]["ensemble"].update(size=1), "classifier.ensemble.size: must be 0 (no ensemble) or at least 2"),
        (lambda p: p["classifier"]["candidates"]["tfidf"].update(kind="svm"), "classifier.candidates.tfidf.kind: Input should be 'finetune'"),
        (lambda p: p["classifier"]["candidates"]["minilm-frozen"].pop("base_model"), "kind frozen needs base_model"),
        (lambda p: p["classifier"].update(calibration="platt"), "classifier.calibration: Input should be 'sigmoid', 'isotonic' or 'none'"),
        (lambda p: p["classifier"].update(threshold=1.5), "classifier.threshold: must be 'tune' or a number in (0, 1), got 1.5"),
        (lambda p: p["ingest"].update(benchmarks="medqa"), "ingest.benchmarks: must be all or a non-empty list of benchmark names, got 'medqa'"),
        (lambda p: p["ingest"].update(mirror_dri="x"), "ingest.mirror_dri: unknown key"),
        (lambda p: p["evaluate"].update(models=["nope"]), "evaluate.models: unknown model(s) ['nope']"),
        (lambda p: p["evaluate"]["runtime"].update(backend="llamacpp"), "evaluate.runtime.backend: Input should be 'transformers', 'vllm'"),
        (
            lambda p: p["adversarial"].update(models=["smollm2-135m-instruct-cot"]),
            "adversarial.models: ['smollm2-135m-instruct-cot'] not in evaluate",
        ),
        (lambda p: p["adversarial"]["traces"].update(generator="gpt-9"), "adversarial.traces.generator: unknown model(s) ['gpt-9']"),
        (lambda p: p["cpu"].update(threads=0), "cpu.threads: Input should be greater than 0"),
    ],
)
def test_a_bad_value_is_refused_naming_the_key_and_line(tmp_path, change, message):
    with pytest.raises(catalog.CatalogError) as err:
        load_params(_params(tmp_path, change))
    assert message in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'params.yaml'}:") or "params.yaml:" in str(err.value)


def test_every_problem_is_reported_at_once(tmp_path):
    def change(p):
        p["evaluate"]["questions"]["limit"] = -1
        p["classifier"]["cv"]["folds"] = 0

    lines = str(pytest.raises(catalog.CatalogError, load_params, _params(tmp_path, change)).value).splitlines()
    assert len(lines) == 2 and any("classifier.cv.folds" in x for x in lines) and any("evaluate.questions.limit" in x for x in lines)
