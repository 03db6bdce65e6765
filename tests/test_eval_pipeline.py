import json
import math
import os
import re
import signal
import subprocess
import time

import duckdb
import pandas as pd
import psutil
import pytest
import yaml

from registry.adversarial import RECONSIDER_CUE, RECONSIDER_TURN
from registry.io import load

from .conftest import FAST_GRPO, GRPO, LIMIT, MODEL, PLANTED, SFT, run, venv_env
from .test_vllm_engine import SAME_COMPLETION_FLOOR

pytestmark = pytest.mark.slow


def sql(project, query: str) -> pd.DataFrame:
    out = run(["medreg", "query", query, "--format", "json"], project)
    assert out.returncode == 0, out.stderr
    return pd.DataFrame(json.loads(out.stdout))


def fisher_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact two-sided p of k1/n1 vs k2/n2 correct, from the hypergeometric law: the tables as likely as or less likely than this one."""
    k, n = k1 + k2, n1 + n2
    pmf = {x: math.comb(k, x) * math.comb(n - k, n1 - x) / math.comb(n, n1) for x in range(max(0, n1 + k - n), min(n1, k) + 1)}
    return min(1.0, sum(p for p in pmf.values() if p <= pmf[k1] * (1 + 1e-7)))


def test_fisher_two_sided_by_hand():
    assert fisher_two_sided(3, 3, 0, 3) == pytest.approx(0.1)  # 2 of the 20 equally likely tables are this extreme
    assert fisher_two_sided(2, 4, 2, 4) == pytest.approx(1.0)


def test_demo_eval_writes_validated_predictions_and_sql_matches_a_recount(demo):
    preds = load("predictions", demo, model=MODEL)
    assert preds.groupby("benchmark").size().to_dict() == {"medqa": LIMIT, "medxpertqa": LIMIT, "pubmedqa": LIMIT}
    assert set(preds["category"]) == {"reasoning", "knowledge"} and (preds["model"] == MODEL).all()
    assert preds["tokens"].between(1, 32).all() and "latency_s" not in preds  # timings: data/metrics/eval_timing, not the versioned table
    timing = json.loads((demo / f"data/metrics/eval_timing/{MODEL}.json").read_text())
    assert timing["generated"] + timing["cached"] == 3 * LIMIT and timing["new_tokens"] >= timing["generated"]
    # the limit cut each benchmark: every one has more labeled questions than were asked, none asked twice, all of them real
    labels = load("splits", demo)
    assert (labels.groupby("benchmark").size()[["medqa", "medxpertqa", "pubmedqa"]] > LIMIT).all()
    asked = set(zip(preds["benchmark"], preds["qid"], strict=True))
    assert len(asked) == len(preds) and asked <= set(zip(labels["benchmark"], labels["qid"], strict=True))
    joined = preds.merge(labels[["benchmark", "qid", "category"]], on=["benchmark", "qid"], suffixes=("", "_label"))
    assert len(joined) == len(preds) and (joined["category"] == joined["category_label"]).all()

    got = sql(
        demo, f"select model, category, avg(correct) as acc, count(*) as n from predictions where model = '{MODEL}' group by all order by category"
    )
    recount = preds.groupby("category")["correct"].agg(["mean", "size"]).sort_index()
    assert got["acc"].tolist() == pytest.approx(recount["mean"].tolist()) and got["n"].tolist() == recount["size"].tolist()

    for (bench, category), g in preds.groupby(["benchmark", "category"]):
        summary = sql(demo, f"select * from summary where model = '{MODEL}' and benchmark = '{bench}' and category = '{category}'").iloc[0]
        assert (summary["n"], summary["correct"]) == (len(g), g["correct"].sum()) and summary["accuracy"] == pytest.approx(g["correct"].mean())
        assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
    metrics = json.loads((demo / "data/metrics/eval.json").read_text())[MODEL]
    assert metrics["all"] == pytest.approx(preds["correct"].mean(), abs=1e-4) and metrics["n"] == 3 * LIMIT
    # the gap, by hand from the predictions: knowledge-heavy minus reasoning-heavy accuracy, pooled over the benchmarks
    know, reas = preds.loc[preds["category"] == "knowledge", "correct"], preds.loc[preds["category"] == "reasoning", "correct"]
    gap = sql(demo, f"select * from gaps where model = '{MODEL}'").iloc[0]
    assert (gap["n_knowledge"], gap["n_reasoning"]) == (len(know), len(reas)) and len(know) + len(reas) == 3 * LIMIT
    assert gap["knowledge_accuracy"] == pytest.approx(know.sum() / len(know)) and gap["reasoning_accuracy"] == pytest.approx(reas.sum() / len(reas))
    assert gap["gap"] == pytest.approx(know.sum() / len(know) - reas.sum() / len(reas)) and gap["gap_ci_low"] <= gap["gap"] <= gap["gap_ci_high"]
    assert gap["p_fisher"] == pytest.approx(fisher_two_sided(int(know.sum()), len(know), int(reas.sum()), len(reas)))
    assert metrics["knowledge"] == pytest.approx(know.mean(), abs=1e-4) and metrics["reasoning"] == pytest.approx(reas.mean(), abs=1e-4)
    assert "accuracy by category" in run(["dvc", "plots", "show", "--json"], demo).stdout


def test_adversarial_stages_and_robustness_recount(demo):
    traces = load("adversarial_traces", demo)
    metrics = json.loads((demo / "data/metrics/adversarial_traces.json").read_text())
    assert metrics["traces"] == len(traces) and metrics["traces"] + metrics["dropped"] == 3 * LIMIT  # one per question
    assert (traces["generator"] == MODEL).all() and len(traces) > 0
    adv = load("adversarial_predictions", demo, model=MODEL)
    assert len(adv) == len(traces) and (adv["protocol"] == "prefill").all() and (adv["target"] != adv["answer"]).all()

    clean = load("predictions", demo, model=MODEL)
    pairs = adv.merge(clean[["benchmark", "qid", "correct"]], on=["benchmark", "qid"], suffixes=("", "_clean"))
    got = sql(
        demo,
        "select category, clean_accuracy, adversarial_accuracy, took_bait, flipped, pairs from robustness "
        f"where model = '{MODEL}' and benchmark = 'all'",
    )
    for r in got.itertuples():
        s = pairs if r.category == "all" else pairs[pairs["category"] == r.category]
        assert r.pairs == len(s)
        assert r.clean_accuracy == pytest.approx(s["correct_clean"].mean()) and r.adversarial_accuracy == pytest.approx(s["correct"].mean())
        assert r.took_bait == pytest.approx((s["extracted"] == s["target"]).mean())
        ok = s[s["correct_clean"] == 1]
        if ok.empty:  # no clean-correct pair: the flip share is undefined (NULL)
            assert r.flipped is None or r.flipped != r.flipped
        else:
            assert r.flipped == pytest.approx((ok["correct"] == 0).mean())
    tables = set(sql(demo, "select table_name from information_schema.tables")["table_name"])
    assert {"adversarial_traces", "adversarial_predictions", "robustness"} <= tables


def test_medreg_prompt_shows_what_each_protocol_sends(demo):
    trace = load("adversarial_traces", demo).iloc[0]
    args = ["medreg", "prompt", MODEL, trace["benchmark"], trace["qid"], "--trace", str(trace["trace_index"])]
    prefill = run([*args, "--protocol", "prefill"], demo)
    assert prefill.returncode == 0, prefill.stderr
    assert prefill.stdout.endswith(trace["trace"] + RECONSIDER_CUE)
    turn = run([*args, "--protocol", "turn"], demo).stdout
    assert f"{trace['trace']}<|im_end|>\n<|im_start|>user\n{RECONSIDER_TURN}<|im_end|>\n<|im_start|>assistant\n" in turn
    clean = run(["medreg", "prompt", MODEL, trace["benchmark"], trace["qid"]], demo).stdout
    assert clean.endswith("<|im_start|>assistant\n") and trace["trace"] not in clean
    missing = run(["medreg", "prompt", MODEL, "medqa", "no-such-qid"], demo)
    assert missing.returncode == 2 and "no question medqa/no-such-qid" in missing.stderr


def test_training_data_is_decontaminated_and_the_planted_question_not_trained_on(demo):
    found = sql(demo, f"select benchmark, benchmark_qid, reason, score from contaminated where qid = '{PLANTED}'")
    assert found.to_dict("records") == [{"benchmark": "medqa", "benchmark_qid": "4", "reason": "ngram", "score": 100.0}]
    rl = load("rl_data", demo)
    assert PLANTED not in set(rl.qid) and len(rl) == 32  # every original demo prompt survives
    metrics = json.loads((demo / "data/metrics/train_data.json").read_text())
    assert metrics["datasets"]["demo_rl"] == {**metrics["datasets"]["demo_rl"], "rows": 33, "contaminated": 1, "kept": 32}


def test_base_sft_and_grpo_are_evaluated_side_by_side(demo):
    summary = sql(demo, "select model, accuracy, think_format from summary where benchmark = 'all' and category = 'all'").set_index("model")
    assert set(summary.index) == {MODEL, SFT, GRPO}
    assert summary.loc[MODEL, "think_format"] == 0 and summary.loc[SFT, "think_format"] > 0  # the SFT model writes the trained format
    robustness = sql(demo, "select distinct model from robustness where benchmark = 'all'")
    assert set(robustness.model) == {MODEL, SFT, GRPO}
    card = (demo / "models/checkpoints/sft/README.md").read_text()
    assert "data/train/sft.parquet" in card and MODEL in card
    grpo = json.loads((demo / "data/metrics/grpo.json").read_text())
    logged = pd.read_csv(demo / "dvclive/grpo/plots/metrics/reward.tsv", sep="\t")  # one row per optimisation step the trainer took
    assert logged["step"].tolist() == list(range(FAST_GRPO["max_steps"])) and grpo["steps"] == len(logged)
    assert (grpo["reward_first"], grpo["reward_last"]) == pytest.approx((logged["reward"].iloc[0], logged["reward"].iloc[-1]), abs=1e-4)
    assert 0 <= grpo["frac_reward_zero_std_mean"] <= 1
    plots = run(["dvc", "plots", "show", "--json"], demo).stdout
    assert "GRPO mean reward" in plots and "SFT loss" in plots


def test_lineage_names_each_checkpoints_training_data(demo):
    lock = yaml.safe_load((demo / "dvc.lock").read_text())["stages"]
    sft_md5 = next(o["md5"] for o in lock["select_training"]["outs"] if o["path"] == "data/train/sft.parquet")
    got = sql(demo, "select stage, checkpoint, training_input, training_input_md5 from checkpoints order by stage, training_input")
    sft = got[got.stage == "sft"].set_index("training_input")
    assert sft.loc["data/train/sft.parquet", "training_input_md5"] == sft_md5 and (sft.checkpoint == "models/checkpoints/sft").all()
    assert {"data/train/rl.parquet", "data/train/rl_traces.parquet", "models/checkpoints/sft"} <= set(got[got.stage == "grpo"].training_input)
    score = sql(demo, f"select distinct input from lineage where stage = 'evaluate@{SFT}' and input like 'models/pins/%'")
    assert score.input.tolist() == [f"models/pins/{SFT}.json"]  # the score's weights, pinned: pin_models' inputs name the checkpoint


TWO_PROCESSES = ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "stages.sft"]  # sft.launch on a 2-process CPU run
# 1 process at batch 4 vs 2 processes at batch 2 (the same global batch): the largest loss difference measured here was
# 2.4e-7 on the development machine (float32 gradients averaged over gloo); the tolerance leaves room for summation order
LOSS_TOLERANCE = 1e-5


def _sft_dir(demo, dest, **sft):
    """A directory where the sft stage runs alone: params (with `sft` overrides), the training rows, the converted model."""
    for rel in ("data/train", "models/llm"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(demo / rel, dest / rel)
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["sft"].update(sft)
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


def _losses(work) -> list[float]:
    rows = (work / "dvclive/sft/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    return [float(r.split("\t")[1]) for r in rows]


def test_two_process_sft_is_one_group_with_the_loss_curve_of_one_process_even_when_killed_and_resumed(demo, tmp_path):
    """sft.launch torchrun: one gloo group of 2; killed after checkpoint-2, resumed, its 4 losses are those of 1 process."""
    one = _sft_dir(demo, tmp_path / "one", max_steps=4, batch_size=4, save_steps=10)
    assert (done := run(["python", "-m", "stages.sft"], one)).returncode == 0, done.stderr
    two = _sft_dir(demo, tmp_path / "two", max_steps=4, batch_size=2, save_steps=2)
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen(TWO_PROCESSES, cwd=two, env=venv_env(), stdout=log, stderr=subprocess.STDOUT)
    saved = two / "models/checkpoints/.runs/sft/checkpoint-2/trainer_state.json"
    deadline = time.time() + 600
    while time.time() < deadline and not saved.exists() and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]  # still training when checkpoint-2 is there
    launcher = psutil.Process(proc.pid)
    tree = [launcher, *launcher.children(recursive=True)]  # torchrun's workers run in sessions of their own
    assert len(tree) >= 3, [p.cmdline() for p in tree]
    for process in tree:
        process.kill()
    psutil.wait_procs(tree)
    assert saved.exists() and not (two / "models/checkpoints/sft").exists()
    resumed = run(TWO_PROCESSES, two)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("sft: resuming from models/checkpoints/.runs/sft/checkpoint-2") == 1  # rank 0 alone reports
    metrics = [json.loads((w / "data/metrics/sft.json").read_text()) for w in (one, two)]
    assert [m["processes"] for m in metrics] == [1, 2]  # world size 2: one gloo group, not two lone trainers
    assert (metrics[1]["steps"], metrics[1]["resumed"]) == (4, True)
    logged = (two / "dvclive/sft/plots/metrics/loss.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in logged] == [0, 1, 2, 3]  # DVCLive: each step once, across the kill
    assert _losses(two) == pytest.approx(_losses(one), abs=LOSS_TOLERANCE)  # same rows, same order, same updates
    meta = json.loads((two / "models/checkpoints/sft/medreg.json").read_text())
    assert meta["metrics"]["steps"] == 4 and "resumed" not in meta["metrics"]  # timings and resumption: data/metrics only
    assert not (two / "models/checkpoints/.runs/sft").exists()


def test_exp_run_adding_a_model_evaluates_only_that_model(demo):
    result = run(["dvc", "exp", "run", "-S", f"evaluate.models=[{MODEL},{SFT},{GRPO},{MODEL}-cot]"], demo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Running stage 'evaluate@{MODEL}-cot'" in result.stdout
    assert "Running stage 'evaluate@" not in result.stdout.replace(f"Running stage 'evaluate@{MODEL}-cot'", "")
    got = sql(demo, "select model, count(*) as n from predictions group by model order by model")
    assert got.to_dict("list") == {"model": sorted([MODEL, SFT, GRPO, f"{MODEL}-cot"]), "n": [3 * LIMIT] * 4}
    assert len(sql(demo, "select * from gaps")) == 4


def _stage_dir(demo, dest, limit: int):
    """A directory where `python -m stages.evaluate` runs alone: params, questions, labels and the converted model."""
    for rel in ("data/raw", "data/splits", "models/llm", "models/pins"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        if not (dest / rel).exists():
            os.symlink(demo / rel, dest / rel)
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["evaluate"]["questions"]["limit"] = limit
    params["evaluate"]["runtime"]["batch_size"] = 2
    params["evaluate"]["generation"]["max_new_tokens"] = 8
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest


def test_evaluation_traces_and_adversarial_stages_run_on_the_real_vllm_engine(demo, tmp_path):
    """The three generating stages with evaluate.runtime.backend: vllm (one engine each), against the demo's transformers run."""
    work = _stage_dir(demo, tmp_path / "vllm", limit=1)
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["evaluate"]["questions"]["limit"] = 1
    params["evaluate"]["runtime"]["backend"] = "vllm"
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    for stage in (["stages.evaluate", MODEL], ["stages.adversarial_traces"], ["stages.adversarial", MODEL]):
        result = run(["python", "-m", *stage], work)
        assert result.returncode == 0, result.stdout + result.stderr
        assert (result.stdout + result.stderr).count("Initializing a V1 LLM engine (v0.32.0)") == 1  # one engine per stage
    got, ref = load("predictions", work, model=MODEL), load("predictions", demo, model=MODEL)
    assert len(got) == 3 and (got.backend == "vllm").all() and (ref.backend == "transformers").all()
    both = got.merge(ref, on=["benchmark", "qid"], suffixes=("_vllm", "_hf"))
    assert len(both) == 3  # the limit-1 questions are among the demo's limit-4 ones
    assert (both.completion_vllm == both.completion_hf).mean() >= SAME_COMPLETION_FLOOR  # float32 on both (tests/test_vllm_engine.py)
    traces = load("adversarial_traces", work)
    assert not traces.empty and set(zip(traces.benchmark, traces.qid, strict=True)) <= set(zip(got.benchmark, got.qid, strict=True))
    adversarial = load("adversarial_predictions", work, model=MODEL)
    assert (adversarial.backend == "vllm").all() and len(adversarial) == len(traces)


def test_exp_run_of_grpo_with_colocated_vllm_reruns_only_grpo_and_what_depends_on_it(demo):
    """grpo.use_vllm on CPU: the engine samples, and after each step it has the trained weights (vLLM's in-place reload).

    A learning rate of 1e-3 moves the policy at every step, so an engine left with the old weights would score its own
    samples far from the trainer (a deliberately perturbed model measured 22 nats apart); synced, float32 on both, they agree.
    """
    result = run(["dvc", "exp", "run", "-S", "grpo.use_vllm=true", "-S", "grpo.learning_rate=1.0e-3"], demo)
    assert result.returncode == 0, result.stdout + result.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
    assert ran == {"grpo", "pin_models", f"evaluate@{GRPO}", f"adversarial@{GRPO}", "summarise", "robustness", "build_db"}
    metrics = json.loads((demo / "data/metrics/grpo.json").read_text())
    assert metrics["steps"] == FAST_GRPO["max_steps"] == 2  # the second step samples after a sync
    logged = (demo / "dvclive/grpo/plots/metrics/sampling/sampling_logp_difference/max.tsv").read_text().splitlines()[1:]
    per_step = [float(r.split("\t")[1]) for r in logged]
    assert len(per_step) == 2 and max(per_step) == pytest.approx(metrics["vllm_logp_difference_max"]) and max(per_step) < 0.01


def test_sigkill_midway_then_resume_gives_the_uninterrupted_table(demo, tmp_path):
    stage = ["python", "-m", "stages.evaluate", MODEL]
    ref_dir = _stage_dir(demo, tmp_path / "ref", limit=3)
    assert run(stage, ref_dir).returncode == 0
    ref = load("predictions", ref_dir, model=MODEL)

    work = _stage_dir(demo, tmp_path / "work", limit=3)
    cache = work / f"data/eval/{MODEL}/completions.jsonl"
    proc = subprocess.Popen(stage, cwd=work, env=venv_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    done_before = len(cache.read_text().splitlines())
    assert 2 <= done_before < 9 and not (work / f"data/eval/{MODEL}/predictions.parquet").exists()

    resumed = run(stage, work)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{9 - done_before} prompt(s) to generate, {done_before} cached" in resumed.stdout
    got = load("predictions", work, model=MODEL)
    cols = [c for c in ref.columns if c != "latency_s"]
    pd.testing.assert_frame_equal(got[cols], ref[cols])
    assert len(cache.read_text().splitlines()) == 9

    _stage_dir(demo, work, limit=4)
    grown = run(stage, work)
    assert "3 prompt(s) to generate, 9 cached" in grown.stdout
    assert len(load("predictions", work, model=MODEL)) == 12
    con = duckdb.connect()
    assert con.execute(f"select count(*) from read_json('{cache}', format='newline_delimited')").fetchone()[0] == 12


def _stale(project) -> set[str]:
    out = run(["dvc", "status", "--json"], project)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


def test_an_edit_makes_exactly_the_stages_that_use_it_stale(demo):
    assert _stale(demo) == set()
    evaluated = yaml.safe_load((demo / "params.yaml").read_text())["evaluate"]["models"]
    prompts = demo / "registry/prompts.py"
    original = prompts.read_text()
    prompts.write_text(original + "\n# an edit\n")
    generation = {f"evaluate@{m}" for m in evaluated} | {f"adversarial@{m}" for m in (MODEL, SFT, GRPO)} | {"adversarial_traces"}
    assert _stale(demo) == generation | {"select_training", "rl_traces", "sft", "grpo"}  # training builds its prompts there too
    prompts.write_text(original)

    catalog_file = demo / "registry/models.yaml"
    original = catalog_file.read_text()
    catalog_file.write_text(original.replace("(base of BioMed-R1-8B)", "(the base of BioMed-R1-8B)"))  # a model nobody evaluates
    assert _stale(demo) == {"convert_models", "pin_models"}  # they read every entry; no evaluation is stale
    catalog_file.write_text(original)
    assert _stale(demo) == set()


def test_nothing_to_reproduce_then_bad_input_keeps_outputs(demo):
    """Breaks the demo input, then mends it: later modules use the same demo."""
    metrics = json.loads((demo / "data/metrics/ingest.json").read_text())
    assert metrics["source"] == "demo" and metrics["questions"] == len(load("questions", demo))
    assert "medmcqa" in metrics["skipped"] and (demo / "data/results.duckdb").exists()

    second = run(["dvc", "repro"], demo)
    assert second.returncode == 0
    assert "Data and pipelines are up to date." in second.stdout
    assert "Running stage" not in second.stdout

    tables = run(["medreg", "tables", "--format", "json"], demo)
    assert {r["name"]: r["rows"] for r in json.loads(tables.stdout)}["questions"] == metrics["questions"]

    before = (demo / "data/raw/questions.parquet").read_bytes()
    medqa = demo / "data/demo/medreason/medqa_test.jsonl"
    good = medqa.read_text()
    medqa.write_text(good + '{"question": "broken\n')
    try:
        failed = run(["dvc", "repro"], demo)
        assert failed.returncode != 0
        assert "data/demo/medreason/medqa_test.jsonl" in failed.stderr + failed.stdout
        assert (demo / "data/raw/questions.parquet").read_bytes() == before
    finally:
        medqa.write_text(good)
    assert "Data and pipelines are up to date." in run(["dvc", "repro"], demo).stdout
