"""Checks of the paper-profile rehearsal (`make rehearse` runs them after the experiment `rehearsal`; not collected by `make test`).

They read what the experiment recorded: its results database through `medreg query --rev rehearsal`, its metrics
files through `dvc.api`, and the twin of the Hub it read (.hub-twin).
"""

import json
import subprocess
from pathlib import Path

import dvc.api
import pandas as pd
import pytest

from registry import catalog

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".hub-twin"
EXP = "rehearsal"


def sql(query: str) -> pd.DataFrame:
    out = subprocess.run(["medreg", "query", "--rev", EXP, "--format", "json", query], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return pd.DataFrame(json.loads(out.stdout))


def metrics(name: str) -> dict:
    return json.loads(dvc.api.read(str(catalog.dataset_path(name)), repo=str(ROOT), rev=EXP))


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_profiles_were_chosen_at_launch_and_params_yaml_is_as_committed():
    assert git("status", "--porcelain", "--", "params.yaml") == ""
    params = dvc.api.params_show(repo=str(ROOT), rev=EXP)
    assert params["profile"] == "paper+rehearsal" and params["ingest"]["source"] == "hub" and params["label"]["source"] == "study"
    assert params["hub"]["twin"] == str(TWIN)


def test_questions_of_all_eleven_configs_with_the_commit_read():
    head = git("rev-parse", "main", cwd=TWIN / "zou-lab/BioMed-R1-Eval")
    got = sql("select benchmark, source_file, count(*) n from questions group by all order by benchmark")
    configs = {b: e.hub["study"].config for b, e in catalog.benchmarks().items()}
    assert dict(zip(got["benchmark"], got["source_file"], strict=True)) == {
        b: f"hf://zou-lab/BioMed-R1-Eval@{head}/{c}/test" for b, c in configs.items()
    }
    recorded = metrics("ingest_metrics")["revisions"]
    assert {recorded[b]["config"] for b in configs} == set(configs.values()) and {recorded[b]["commit"] for b in configs} == {head}
    train = metrics("train_data_metrics")["revisions"]
    assert set(train) == {"m23k_clean", "biomed_r1"} and {r["commit"] for r in train.values()} == {
        git("rev-parse", "main", cwd=TWIN / "zou-lab/BioMed-R1-Train")
    }


def test_the_split_is_the_studys_with_our_classifiers_agreement_beside_it():
    got = sql("select category_source, count(*) n, count(*) filter (where category = study_category) same from splits group by all")
    assert got["category_source"].tolist() == ["study"] and (got["n"] == got["same"]).all()
    split = metrics("splits_metrics")
    assert split["source"] == "study" and 0 <= split["study_agreement"]["agreement"] <= 1 and split["study_agreement"]["n"] == got["n"][0]
    assert metrics("classifier_metrics")["n"] > 0  # trained on MedXpertQA's expert labels from its release


@pytest.mark.parametrize("stage", ["sft_metrics", "grpo_metrics"])
def test_training_ran_as_one_group_of_two_processes(stage):
    m = metrics(stage)
    assert m["processes"] == 2 and m["steps"] > 0


def test_both_scorers_in_summary_and_the_studys_numbers_beside_them():
    got = sql("select model, scorer, accuracy from summary where benchmark = 'all' and category = 'all' order by all")
    models = dvc.api.params_show(repo=str(ROOT), rev=EXP)["evaluate"]["models"]
    assert sorted(zip(got["model"], got["scorer"], strict=True)) == sorted((m, s) for m in models for s in ("huatuo", "medreg"))
    joined = sql("""select r.study_model, r.value, s.accuracy from study_references r left join summary s
                    on s.model = r.model and s.benchmark = r.benchmark and s.category = r.category and s.scorer = 'huatuo'""")
    assert len(joined) == len(catalog.references())


def test_adversarial_rows_record_protocol_cue_and_the_studys_traces():
    got = sql("select protocol, cue, count(*) n from adversarial_predictions group by all")
    assert len(got) == 1 and got["protocol"][0] == "prefill" and got["cue"][0] and got["n"][0] > 0
    assert sql("select distinct generator from adversarial_traces")["generator"].tolist() == ["study"]
    assert sql("select distinct backend from predictions")["backend"].tolist() == ["vllm"]
