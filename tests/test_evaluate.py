import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from registry import generation
from registry.backends import Backend, Completion, Generation
from registry.catalog import Model
from registry.errors import MedregError
from registry.evaluate import evaluate, select_questions
from registry.generation import CompletionCache, Generator
from registry.params import Runtime
from registry.prompts import prompt_hash
from registry.stats import cmh_pvalue, gaps, summarise, wilson_ci
from schemas.eval import GapsSchema, PredictionsSchema, SummarySchema
from stages.summarise import eval_metrics

GEN = Generation(max_new_tokens=4)
MODEL = Model(name="fake", title="a fake", source={"local": {"path": "nowhere"}}, family="general", size="0", backend="transformers",
              generation={"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0})  # fmt: skip


def runtime(batch_size: int) -> Runtime:
    return Runtime(
        backend=None,
        batch_size=batch_size,
        flush_every=64,
        tensor_parallel_size=1,
        concurrency=1,
        max_retries=0,
        timeout_s=1,
        allow_unpinned=False,
        vllm={},
    )


def generator(cache: CompletionCache, backend: Backend | None = None, batch_size: int = 3, monkeypatch=None, weights: str = "w1") -> Generator:
    """A Generator whose backend is `backend`; with none, building the backend fails the test."""

    def build(*args):
        if backend is None:
            raise AssertionError("nothing should be generated")
        return backend

    monkeypatch.setattr(generation, "make_backend", build)
    return Generator(MODEL, runtime(batch_size), GEN, cache, weights)


class FakeBackend(Backend):
    """Answers 'Answer: A' for odd question numbers, an unparseable reply otherwise; records what it was asked."""

    name = "transformers"

    def __init__(self, fail_after: int | None = None):
        self.asked: list[str] = []
        self.calls = 0
        self.fail_after = fail_after

    def generate(self, chats, gen, progress=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("killed")
        self.asked += [c[-1]["content"] for c in chats]
        return [Completion("Answer: A" if int(c[-1]["content"].split("#")[1].split()[0]) % 2 else "hmm", 2, 0.5) for c in chats]


def questions(n_per_bench: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [
        {
            "benchmark": b,
            "qid": str(i),
            "question": f"Question #{i} of {b}",
            "context": None,
            "options": {"A": "a", "B": "b"},
            "answer": "A",
            "answer_format": "letter",
        }
        for b in ("b1", "b2")
        for i in range(n_per_bench)
    ]
    q = pd.DataFrame(rows)
    labels = q[["benchmark", "qid"]].assign(category=["reasoning" if int(i) < 3 else "knowledge" for i in q["qid"]])
    return q, labels


def test_selection_is_seeded_and_a_larger_limit_keeps_the_smaller_set():
    q, labels = questions(10)
    small = select_questions(q, labels, "all", 3, seed=1)
    large = select_questions(q, labels, "all", 6, seed=1)
    assert small.groupby("benchmark").size().tolist() == [3, 3]
    assert set(zip(small.benchmark, small.qid, strict=True)) <= set(zip(large.benchmark, large.qid, strict=True))
    assert not small.equals(select_questions(q, labels, "all", 3, seed=2))
    assert set(select_questions(q, labels, ["b2"], None, 1)["benchmark"]) == {"b2"}
    with pytest.raises(MedregError, match="nope"):
        select_questions(q, labels, ["nope"], 3, 1)


def test_killed_run_resumes_to_the_same_table_and_a_larger_limit_generates_only_new_items(tmp_path, monkeypatch):
    q, labels = questions(6)
    rows = select_questions(q, labels, "all", 4, seed=0)

    ref = evaluate(generator(CompletionCache(tmp_path / "ref.jsonl"), FakeBackend(), monkeypatch=monkeypatch), rows)
    PredictionsSchema.validate(ref)

    cache_path = tmp_path / "c.jsonl"
    killed = FakeBackend(fail_after=1)
    with pytest.raises(KeyboardInterrupt):
        evaluate(generator(CompletionCache(cache_path), killed, monkeypatch=monkeypatch), rows)
    assert len(cache_path.read_text().splitlines()) == 3  # the first batch survived
    with cache_path.open("a") as f:
        f.write('{"key": "torn')  # a write cut by SIGKILL
    resumed_backend = FakeBackend()
    cache = CompletionCache(cache_path)
    assert cache.torn == 1
    resumed = evaluate(generator(cache, resumed_backend, monkeypatch=monkeypatch), rows)
    assert len(resumed_backend.asked) == 5
    pd.testing.assert_frame_equal(resumed, ref)
    assert len(cache_path.read_text().splitlines()) == 8 and not resumed.duplicated(["benchmark", "qid"]).any()

    more = select_questions(q, labels, "all", 6, seed=0)
    grown_backend = FakeBackend()
    grown = evaluate(generator(CompletionCache(cache_path), grown_backend, monkeypatch=monkeypatch), more)
    assert len(grown_backend.asked) == 4 and len(grown) == 12

    again = evaluate(generator(CompletionCache(cache_path), None, monkeypatch=monkeypatch), more)  # all cached: no backend is built
    pd.testing.assert_frame_equal(again, grown)
    g, chat = generator(CompletionCache(cache_path), None, monkeypatch=monkeypatch), [{"role": "user", "content": "q"}]
    assert g.key(chat, GEN) != g.key(chat, Generation(max_new_tokens=5))
    # the key by hand: model, weights, backend, prompt hash, settings (caches written before template kwargs joined it still apply)
    parts = ["fake", "w1", "transformers", prompt_hash(chat), {"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "top_k": 0,
             "repetition_penalty": 1.0, "seed": 0, "ignore_eos": False}]  # fmt: skip
    assert g.key(chat, GEN) == hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
    thinking = {
        think: MODEL.model_copy(update={"chat": MODEL.chat.model_copy(update={"template_kwargs": {"enable_thinking": think}})})
        for think in (True, False)
    }
    keys = {think: Generator(m, runtime(3), GEN, CompletionCache(cache_path), "w1").key(chat, GEN) for think, m in thinking.items()}
    assert len({keys[True], keys[False], g.key(chat, GEN)}) == 3  # the same messages rendered another way: not the same completion

    retrained = FakeBackend()  # the same model name with new weights (a re-trained checkpoint): nothing cached applies
    evaluate(generator(CompletionCache(cache_path), retrained, monkeypatch=monkeypatch, weights="w2"), more)
    assert len(retrained.asked) == 12


def test_unparseable_output_is_scored_wrong_and_flagged(tmp_path, monkeypatch):
    q, labels = questions(4)
    preds = evaluate(generator(CompletionCache(tmp_path / "c.jsonl"), FakeBackend(), 8, monkeypatch), select_questions(q, labels, "all", None, 0))
    odd = preds["qid"].astype(int) % 2 == 1
    assert preds.loc[odd, "correct"].all() and not preds.loc[~odd, "correct"].any()
    assert preds.loc[~odd, "parse_failed"].all() and preds.loc[~odd, "extracted"].isna().all()
    flags = ("correct", "parse_failed", "think_format")
    assert {c: str(preds[c].dtype) for c in flags} == dict.fromkeys(flags, "bool")


def hand_made() -> pd.DataFrame:
    """Model m: b1 knowledge 8/10, b1 reasoning 3/10, b2 knowledge 5/5, b2 reasoning 1/5.

    HuatuoGPT-o1's matcher: its last match is right exactly where ours is, its first match once less; its first
    reading of every cell is a closest-string guess.
    """
    rows = []
    for bench, category, n, k in [("b1", "knowledge", 10, 8), ("b1", "reasoning", 10, 3), ("b2", "knowledge", 5, 5), ("b2", "reasoning", 5, 1)]:
        rows += [
            {
                "model": "m",
                "benchmark": bench,
                "category": category,
                "correct": i < k,
                "parse_failed": i == n - 1,
                "think_format": i % 2 == 0,
                "answer": "A",
                "huatuo_first": "A" if i < k - 1 else "B",
                "huatuo_last": "A" if i < k else "B",
                "huatuo_rule": "closest string" if i == 0 else "answer phrase",
            }  # fmt: skip
            for i in range(n)
        ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "k, n, low, high",
    [(0, 4, 0.0, 0.4899), (4, 4, 0.5101, 1.0), (5, 10, 0.2366, 0.7634), (8, 10, 0.4902, 0.9433), (1, 5, 0.0362, 0.6245), (17, 30, 0.3920, 0.7262)],
)
def test_wilson_interval_matches_known_values_and_scipy(k, n, low, high):
    got = wilson_ci(k, n)
    assert got == pytest.approx((low, high), abs=1e-4)
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert got == pytest.approx((ref.low, ref.high), abs=1e-12)
    assert np.isnan(wilson_ci(0, 0)).all()


def test_summary_counts_accuracy_and_wilson_ci():
    s = SummarySchema.validate(summarise(hand_made()))
    get = s[s["scorer"] == "medreg"].set_index(["benchmark", "category"])
    assert get.loc[("b1", "knowledge"), ["n", "n_correct"]].tolist() == [10, 8]
    assert get.loc[("all", "all"), ["n", "n_correct", "parse_failures"]].tolist() == [30, 17, 4]
    assert get.loc[("all", "reasoning"), "accuracy"] == pytest.approx(4 / 15)
    assert get.loc[("all", "all"), ["ci_low", "ci_high"]].tolist() == pytest.approx([0.3920, 0.7262], abs=1e-4)  # Wilson, 17 of 30
    # 5 of 5: a percentile bootstrap would collapse to [1, 1]; Wilson keeps the uncertainty of 5 answers
    assert get.loc[("b2", "knowledge"), ["ci_low", "ci_high"]].tolist() == pytest.approx([0.5655, 1.0], abs=1e-4)
    assert get.loc[("b1", "knowledge"), "think_format_share"] == 0.5 and get.loc[("b2", "knowledge"), "think_format_share"] == 0.6
    # every cell against counts written out by hand: (n, n_correct, parse_failures) per benchmark x category, 'all' pooled
    hand = {("b1", "knowledge"): (10, 8, 1), ("b1", "reasoning"): (10, 3, 1), ("b2", "knowledge"): (5, 5, 1), ("b2", "reasoning"): (5, 1, 1),
            ("b1", "all"): (20, 11, 2), ("b2", "all"): (10, 6, 2), ("all", "knowledge"): (15, 13, 2), ("all", "reasoning"): (15, 4, 2),
            ("all", "all"): (30, 17, 4)}  # fmt: skip
    assert {k: tuple(v) for k, v in get[["n", "n_correct", "parse_failures"]].iterrows()} == hand
    assert get["accuracy"].to_dict() == pytest.approx({k: c / n for k, (n, c, _) in hand.items()})
    assert ((get["ci_low"] <= get["accuracy"]) & (get["accuracy"] <= get["ci_high"])).all()
    assert {k: (r.ci_low, r.ci_high) for k, r in get.iterrows()} == {k: wilson_ci(c, n) for k, (n, c, _) in hand.items()}
    # HuatuoGPT-o1's scoring of the same completions: the better of first-match and last-match accuracy per cell
    huatuo = s[s["scorer"] == "huatuo"].set_index(["benchmark", "category"])
    assert (huatuo["match"] == "last").all() and huatuo["n_correct"].to_dict() == {k: c for k, (_, c, _) in hand.items()}
    assert huatuo["parse_failures"].to_dict() == {k: p for k, (_, _, p) in hand.items()}  # one closest-string guess per cell
    flipped = hand_made().rename(columns={"huatuo_first": "huatuo_last", "huatuo_last": "huatuo_first"})
    h = summarise(flipped).query("scorer == 'huatuo'").set_index(["benchmark", "category"])
    assert (h["match"] == "first").all() and h["n_correct"].equals(huatuo["n_correct"])


def test_gap_and_significance_tests_match_direct_computation():
    g = GapsSchema.validate(gaps(hand_made(), n_boot=4000, seed=0)).iloc[0]
    assert g["knowledge_accuracy"] == pytest.approx(13 / 15) and g["reasoning_accuracy"] == pytest.approx(4 / 15)
    assert g["gap"] == pytest.approx(9 / 15) and g["gap_ci_low"] < 9 / 15 < g["gap_ci_high"] and g["gap_ci_low"] > 0.2
    assert g["p_fisher"] == pytest.approx(stats.fisher_exact([[13, 2], [4, 11]]).pvalue)
    # CMH by hand: b1 a=8, E=10*11/20, V=10*10*11*9/(400*19); b2 a=5, E=5*6/10, V=5*5*6*4/(100*9)
    num = (8 - 5.5) + (5 - 3.0)
    var = 10 * 10 * 11 * 9 / (400 * 19) + 5 * 5 * 6 * 4 / (100 * 9)
    assert g["p_cmh"] == pytest.approx(stats.chi2.sf((abs(num) - 0.5) ** 2 / var, 1))
    same = hand_made().assign(correct=True)
    assert np.isnan(cmh_pvalue(same))  # every answer right: no variance, no test (NaN), never a false positive


def test_eval_metrics_are_flat_results_with_their_cis():
    preds = hand_made()
    summary, g = summarise(preds), gaps(preds, n_boot=2000, seed=0)
    m = eval_metrics(summary, g)["m"]
    assert list(m) == [
        "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "knowledge", "reasoning", "gap", "gap_ci_low", "gap_ci_high", "huatuo",
        "think_format_share",
    ]  # fmt: skip
    assert json.loads(json.dumps(m)) == m  # plain JSON numbers, rounded to 4 decimals
    assert (m["n"], m["accuracy"], m["accuracy_ci_low"], m["accuracy_ci_high"]) == (30, 0.5667, 0.392, 0.7262)
    assert (m["knowledge"], m["reasoning"], m["gap"], m["huatuo"], m["think_format_share"]) == (0.8667, 0.2667, 0.6, 0.5667, 0.5333)
    assert (m["gap_ci_low"], m["gap_ci_high"]) == (round(g["gap_ci_low"][0], 4), round(g["gap_ci_high"][0], 4)) and 0.2 < m["gap_ci_low"] < 0.6
    only_knowledge = preds[preds["category"] == "knowledge"]
    k = eval_metrics(summarise(only_knowledge), gaps(only_knowledge, n_boot=100, seed=0))["m"]
    assert (k["knowledge"], k["reasoning"], k["gap"], k["gap_ci_low"]) == (0.8667, None, None, None)  # no reasoning question: no gap


def test_cache_file_is_plain_jsonl(tmp_path):
    cache = CompletionCache(tmp_path / "c.jsonl")
    cache.add([{"key": "k1", "text": "Answer: B", "tokens": 3, "latency_s": 0.1}])
    assert json.loads((tmp_path / "c.jsonl").read_text())["text"] == "Answer: B"
    assert "k1" in CompletionCache(tmp_path / "c.jsonl")
