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
    assert params.evaluate.models and params.classifier.split.test > 0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["evaluate"]["questions"].update(limit=-1), "evaluate.questions.limit: Input should be greater than 0 (got -1)"),
        (lambda p: p["evaluate"]["questions"].update(limit=0), "evaluate.questions.limit: Input should be greater than 0 (got 0)"),
        (lambda p: p["classifier"]["split"].update(val=0.2), "classifier.split: train + val + test must be 1, got 1.05"),
        (lambda p: p["classifier"]["split"].update(test=0), "classifier.split.test: Input should be greater than 0 (got 0)"),
        (lambda p: p["classifier"]["split"].pop("test"), "classifier.split.test: required key missing"),
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
        p["classifier"]["split"]["test"] = 0

    lines = str(pytest.raises(catalog.CatalogError, load_params, _params(tmp_path, change)).value).splitlines()
    assert len(lines) == 2 and any("classifier.split.test" in x for x in lines) and any("evaluate.questions.limit" in x for x in lines)
