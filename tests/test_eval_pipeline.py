import json
import math
import re

import pandas as pd
import pytest
import yaml

from registry import catalog
from registry.adversarial import RECONSIDER_CUE, RECONSIDER_TURN
from registry.io import load

from .conftest import FAST_GRPO, GRPO, LIMIT, MODEL, PLANTED, SFT, demo_params, run
from .test_stage_runs import stage_dir
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
    assert preds["tokens"].between(1, 32).all() and "latency_s" not in preds  # timings: data/timings, not the versioned table
    timing = json.loads((demo / f"data/timings/evaluate@{MODEL}.json").read_text())
    assert timing["generated"] + timing["cached"] == 3 * LIMIT and timing["new_tokens"] >= timing["generated"]
    # the limit cut each benchmark: every one has more labeled questions than were asked, none asked twice, all of them real
    labels = load("splits", demo)
    assert (labels.groupby("benchmark").size()[["medqa", "medxpertqa", "pubmedqa"]] > LIMIT).all()
    asked = set(zip(preds["benchmark"], preds["qid"], strict=True))
    assert len(asked) == len(preds) and asked <= set(zip(labels["benchmark"], labels["qid"], strict=True))
    joined = preds.merge(labels[["benchmark", "qid", "category"]], on=["benchmark", "qid"], suffixes=("", "_label"))
    assert len(joined) == len(preds) and (joined["category"] == joined["category_label"]).all()

    got = sql(
        demo, f"select model, category, avg(correct::int) acc, count(*) n from predictions where model = '{MODEL}' group by all order by category"
    )
    recount = preds.groupby("category")["correct"].agg(["mean", "size"]).sort_index()
    assert got["acc"].tolist() == pytest.approx(recount["mean"].tolist()) and got["n"].tolist() == recount["size"].tolist()

    for (bench, category), g in preds.groupby(["benchmark", "category"]):
        cell = f"select * from summary where model = '{MODEL}' and benchmark = '{bench}' and category = '{category}'"
        summary = sql(demo, cell + " and scorer = 'medreg'").iloc[0]
        assert (summary["n"], summary["n_correct"]) == (len(g), g["correct"].sum()) and summary["accuracy"] == pytest.approx(g["correct"].mean())
        assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
        # HuatuoGPT-o1's scorer on the same completions: the better of its first and last matches
        huatuo = sql(demo, cell + " and scorer = 'huatuo'").iloc[0]
        first, last = (g["huatuo_first"] == g["answer"]).sum(), (g["huatuo_last"] == g["answer"]).sum()
        assert (huatuo["n_correct"], huatuo["match"]) == (max(first, last), "first" if first > last else "last")
        assert huatuo["parse_failures"] == (g["huatuo_rule"] == "closest string").sum()
    assert preds["correct"].dtype == bool and preds["parse_failed"].dtype == bool and preds["think_format"].dtype == bool
    metrics = json.loads((demo / "data/metrics/eval.json").read_text())[MODEL]
    assert metrics["accuracy"] == pytest.approx(preds["correct"].mean(), abs=1e-4) and metrics["n"] == 3 * LIMIT
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]
    # the gap, by hand from the predictions: knowledge-heavy minus reasoning-heavy accuracy, pooled over the benchmarks
    know, reas = preds.loc[preds["category"] == "knowledge", "correct"], preds.loc[preds["category"] == "reasoning", "correct"]
    gap = sql(demo, f"select * from gaps where model = '{MODEL}'").iloc[0]
    assert (gap["n_knowledge"], gap["n_reasoning"]) == (len(know), len(reas)) and len(know) + len(reas) == 3 * LIMIT
    assert gap["knowledge_accuracy"] == pytest.approx(know.sum() / len(know)) and gap["reasoning_accuracy"] == pytest.approx(reas.sum() / len(reas))
    assert gap["gap"] == pytest.approx(know.sum() / len(know) - reas.sum() / len(reas)) and gap["gap_ci_low"] <= gap["gap"] <= gap["gap_ci_high"]
    assert gap["p_fisher"] == pytest.approx(fisher_two_sided(int(know.sum()), len(know), int(reas.sum()), len(reas)))
    assert metrics["knowledge"] == pytest.approx(know.mean(), abs=1e-4) and metrics["reasoning"] == pytest.approx(reas.mean(), abs=1e-4)
    assert [metrics[k] for k in ("gap", "gap_ci_low", "gap_ci_high")] == pytest.approx([gap["gap"], gap["gap_ci_low"], gap["gap_ci_high"]], abs=1e-4)
    assert "accuracy by category" in run(["dvc", "plots", "show", "--json"], demo).stdout
    # the study's published numbers beside ours: the demo evaluates none of the study's models, so ours are empty
    beside = sql(demo, STUDY_BESIDE_OURS)
    clean = [r for r in catalog.references() if r.measure == "accuracy" and r.setting == "clean"]
    assert len(beside) == len(clean) and beside["ours"].isna().all()
    assert beside.set_index(["study_model", "category", "paper_version"])["study"].to_dict() == {
        (r.study_model, r.category, r.paper_version): r.value for r in clean
    }


STUDY_BESIDE_OURS = """select r.study_model, r.category, r.paper_version, r.value as study, s.accuracy as ours
    from study_references r left join summary s
      on s.model = r.model and s.benchmark = r.benchmark and s.category = r.category and s.scorer = 'huatuo'
    where r.measure = 'accuracy' and r.setting = 'clean' order by all"""


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
        "select category, clean_accuracy, adversarial_accuracy, drop, drop_ci_low, drop_ci_high, took_bait_share, flipped_share, pairs "
        "from robustness "
        f"where model = '{MODEL}' and benchmark = 'all'",
    )
    metrics = json.loads((demo / "data/metrics/robustness.json").read_text())[MODEL]
    for r in got.itertuples():
        s = pairs if r.category == "all" else pairs[pairs["category"] == r.category]
        assert r.pairs == len(s)
        assert r.clean_accuracy == pytest.approx(s["correct_clean"].mean()) and r.adversarial_accuracy == pytest.approx(s["correct"].mean())
        assert r.took_bait_share == pytest.approx((s["extracted"] == s["target"]).mean()) and s["took_bait"].dtype == bool
        ok = s[s["correct_clean"]]
        if ok.empty:  # no clean-correct pair: the flip share is undefined (NULL)
            assert r.flipped_share is None or r.flipped_share != r.flipped_share
        else:
            assert r.flipped_share == pytest.approx((~ok["correct"]).mean())
        m = metrics[r.category]  # the DVC metrics: the results with the drop's CI
        assert list(m) == ["clean", "adversarial", "drop", "drop_ci_low", "drop_ci_high", "took_bait_share"]
        want = [r.clean_accuracy, r.adversarial_accuracy, r.drop, r.drop_ci_low, r.drop_ci_high, r.took_bait_share]
        assert list(m.values()) == pytest.approx(want, abs=1e-4)
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
    summary = sql(
        demo, "select model, accuracy, think_format_share from summary where benchmark = 'all' and category = 'all' and scorer = 'medreg'"
    ).set_index("model")
    assert set(summary.index) == {MODEL, SFT, GRPO}
    assert summary.loc[MODEL, "think_format_share"] == 0 and summary.loc[SFT, "think_format_share"] > 0  # the SFT model writes the trained format
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


def test_exp_run_adding_a_model_evaluates_only_that_model(demo):
    result = run(["dvc", "exp", "run", "-S", f"evaluate.models=[{MODEL},{SFT},{GRPO},{MODEL}-cot]"], demo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Running stage 'evaluate@{MODEL}-cot'" in result.stdout
    assert "Running stage 'evaluate@" not in result.stdout.replace(f"Running stage 'evaluate@{MODEL}-cot'", "")
    got = sql(demo, "select model, count(*) as n from predictions group by model order by model")
    assert got.to_dict("list") == {"model": sorted([MODEL, SFT, GRPO, f"{MODEL}-cot"]), "n": [3 * LIMIT] * 4}
    assert len(sql(demo, "select * from gaps")) == 4
    # later experiments start from this workspace: commit it, or its new untracked (uncached) outputs, such as the CoT
    # model's timing metrics, are missing from their temporary folders and the CoT evaluation re-runs there
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "evaluate the CoT variant"]):
        assert run(cmd, demo).returncode == 0


def test_medreg_eval_of_a_checkpoint_folder_answers_as_its_catalog_entry_in_an_experiment(demo, tmp_path):
    """`medreg eval PATH`: the folder registered in an experiment's copy of models.yaml and evaluated alone, the workspace
    untouched; the same weights, prompt and greedy settings as the catalog's entry give the same completions and cells."""
    name, table = f"{MODEL}-eval", tmp_path / "accuracy.json"
    cmd = ["medreg", "eval", "--model", f"models/llm/{MODEL}", "--benchmarks", "medqa,pubmedqa", "--max-new-tokens", "32", "-o", str(table)]
    out = run(cmd, demo)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"Running stage 'evaluate@{name}'" in out.stdout and "Running stage 'sft'" not in out.stdout
    assert run(["git", "status", "--porcelain"], demo).stdout == ""  # a --temp experiment: params and outputs as they were
    printed = pd.DataFrame(json.loads(table.read_text())).set_index(["benchmark", "category"])
    ours = sql(demo, f"select * from summary where model = '{MODEL}' and scorer = 'medreg' and benchmark in ('medqa', 'pubmedqa')")
    for r in ours.itertuples():
        assert printed.loc[(r.benchmark, r.category), ["n", "n_correct"]].tolist() == [r.n, r.n_correct]
    assert set(printed.index.get_level_values(0)) == {"medqa", "pubmedqa", "all"}
    rev = ["medreg", "query", "--rev", f"eval-{name}", "--format", "json"]
    got = json.loads(run([*rev, "select model, benchmark, qid, completion from predictions order by benchmark, qid"], demo).stdout)
    mine = f"model = '{MODEL}' and benchmark in ('medqa', 'pubmedqa')"
    same = sql(demo, f"select benchmark, qid, completion from predictions where {mine} order by benchmark, qid")
    assert [(g["benchmark"], g["qid"], g["completion"]) for g in got] == list(same.itertuples(index=False, name=None))
    assert {g["model"] for g in got} == {name}
    assert json.loads(run([*rev, "select count(*) n from adversarial_predictions"], demo).stdout) == [{"n": 0}]  # not asked for


# The real vLLM engine runs here, on the worker that runs DVC in the demo, not beside it: run from the other worker (the one
# that also ran tests/test_vllm_engine.py) the engines' own log lines went missing from the stages' output.
def test_evaluation_traces_and_adversarial_stages_run_on_the_real_vllm_engine(demo, tmp_path):
    """The three generating stages with evaluate.runtime.backend: vllm (one engine each), against the demo's transformers run."""
    work = stage_dir(demo, tmp_path / "vllm", limit=1)
    params = demo_params(demo)
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
    The experiment runs in a temporary folder (`--temp`) and is read from its commit: the demo workspace stays as built.
    """
    name = "grpo-vllm"
    result = run(["dvc", "exp", "run", "--temp", "-n", name, "-S", "grpo.use_vllm=true", "-S", "grpo.learning_rate=1.0e-3"], demo)
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        ran = set(re.findall(r"Running stage '([^']+)'", result.stdout))
        assert ran == {"grpo", "pin_models", f"evaluate@{GRPO}", f"adversarial@{GRPO}", "summarise", "robustness", "build_db"}
        refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], demo).stdout.split()
        ref = [r for r in refs if r.endswith(f"/{name}")]
        assert len(ref) == 1, ref

        def show(path: str) -> str:
            out = run(["git", "show", f"{ref[0]}:{path}"], demo)
            assert out.returncode == 0, out.stderr
            return out.stdout

        metrics = json.loads(show("data/metrics/grpo.json"))
        assert metrics["steps"] == FAST_GRPO["max_steps"] == 2  # the second step samples after a sync
        logged = show("dvclive/grpo/plots/metrics/sampling/sampling_logp_difference/max.tsv").splitlines()[1:]
        per_step = [float(r.split("\t")[1]) for r in logged]
        assert len(per_step) == 2 and max(per_step) == pytest.approx(metrics["vllm_logp_difference_max"]) and max(per_step) < 0.01
    finally:
        run(["dvc", "exp", "remove", name], demo)
    assert _stale(demo) == set()


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
