import json
import shutil

import pandas as pd
import pytest

from registry import catalog, io, rewards, training
from registry.catalog import Chat
from registry.ingest import IngestError, ingest
from registry.prompts import extract_answer

from .conftest import DEMO

OPTIONS = {"A": "Vitamin K", "B": "Protamine sulfate", "C": "Idarucizumab", "D": "Andexanet"}
YNM = {"A": "yes", "B": "no", "C": "maybe"}

REWARD_CASES = [
    # completion, gold, options, format, prefilled think, expected (accuracy, format, tags)
    ("<think>\nHeparin is reversed by protamine.\n</think>\nAnswer: B", "B", OPTIONS, "letter", False, (1.0, 1.0, 1.0)),
    ("<think>\nVitamin K reverses it.\n</think>\nAnswer: A", "B", OPTIONS, "letter", False, (0.0, 1.0, 1.0)),
    ("<think>\nEither works.\n</think>\nAnswer: A or B", "B", OPTIONS, "letter", False, (0.0, 0.0, 1.0)),  # two letters: no answer
    ("<think>\nNot sure.\n</think>\nI cannot tell.", "B", OPTIONS, "letter", False, (0.0, 0.0, 0.5)),
    ("Answer: B", "B", OPTIONS, "letter", False, (1.0, 0.0, 0.0)),  # right answer, no think block: accuracy only
    ("<think>\nNo closing tag, Answer: B", "B", OPTIONS, "letter", False, (0.0, 0.0, 0.25)),  # the answer sits inside the think block
    (" it is protamine after all.\n</think>\nAnswer: B", "B", OPTIONS, "letter", True, (1.0, 1.0, 1.0)),  # prefilled think tag
    (" it is protamine after all.\n</think>\nAnswer: B", "B", OPTIONS, "letter", False, (1.0, 0.0, 0.75)),  # same text, not prefilled
    ("<think>\nExercise lowers it.\n</think>\nAnswer: yes", "A", YNM, "yes_no_maybe", False, (1.0, 1.0, 1.0)),
    ("<think>\n</think>\n</think>\nAnswer: B", "B", OPTIONS, "letter", False, (1.0, 0.0, 0.5)),  # closed twice
]


@pytest.mark.parametrize(("text", "gold", "options", "fmt", "prefilled", "expected"), REWARD_CASES)
def test_reward_table(text, gold, options, fmt, prefilled, expected):
    columns = {"answer": [gold], "options": [json.dumps(options)], "answer_format": [fmt], "prefilled_think": [prefilled]}
    got = tuple(f([text], **columns)[0] for f in (rewards.accuracy, rewards.think_format, rewards.tags))
    assert got == expected


def test_rewards_accept_conversational_completions_and_option_lists():
    completion = [{"role": "assistant", "content": "<think>\nok\n</think>\nAnswer: C"}]
    options = [{"letter": k, "text": v} for k, v in OPTIONS.items()]
    assert rewards.accuracy([completion], answer=["C"], options=[options], answer_format=["letter"]) == [1.0]
    assert rewards.tags(["plain text"]) == [0.0]  # partial credit needs some of the format
    assert rewards.tags(["<think>\nreasoning"]) == [0.25]


def _rows(questions: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"dataset": "demo_rl", "qid": [str(i) for i in range(len(questions))], "kind": "rl", "question": questions})


@pytest.fixture(scope="module")
def eval_questions():
    return ingest(catalog.benchmarks(), "demo", DEMO).questions


def test_decontamination_catches_a_planted_evaluation_question(eval_questions):
    medqa = eval_questions[eval_questions.benchmark == "medqa"].iloc[5]
    paraphrase = medqa.question.replace("year-old", "yr old").replace("presents", "comes")  # edited, still near-verbatim
    stock = "A 30-year-old woman comes to the clinic. Which of the following is the most likely diagnosis?"
    rows = _rows([medqa.question, paraphrase.upper(), stock, "What causes scurvy?"])
    found = training.decontaminate(rows, eval_questions, n=8, min_share=0.2, common=3, min_ratio=95).set_index("qid")
    assert set(found.index) == {"0", "1"}  # the copy and its edited, upper-cased version; not the stock phrasing
    assert (found.loc["0", "benchmark"], found.loc["0", "benchmark_qid"], found.loc["0", "reason"]) == ("medqa", medqa.qid, "ngram")
    assert found.loc["0", "score"] == 100.0
    any_overlap = training.decontaminate(rows, eval_questions, n=8, min_share=0.0, common=None, min_ratio=None)
    assert "2" in set(any_overlap.qid)  # with open-r1's rule (any shared 8-gram) the stock phrase is flagged too


def test_near_duplicates_are_caught_by_ratio(eval_questions):
    short = eval_questions[eval_questions.question.str.split().str.len() < 20].iloc[0]
    edited = short.question[:-1] + " ?"
    found = training.decontaminate(_rows([edited]), eval_questions, n=50, min_share=0.2, common=3, min_ratio=95)
    assert found.iloc[0]["reason"] == "near_duplicate" and found.iloc[0]["benchmark_qid"] == short.qid


def test_selection_keeps_the_most_reasoning_heavy_per_kind():
    rows = pd.DataFrame({"dataset": "d", "qid": list("abcdef"), "kind": ["sft"] * 4 + ["rl"] * 2, "p_reasoning": [0.9, 0.2, 0.6, 0.7, 0.1, 0.8]})
    kept = training.select(rows[rows.kind == "sft"], min_p=0.5, top_share=0.7, max_rows=None)
    assert list(kept.qid) == ["a", "c", "d"]  # 0.9, 0.6, 0.7 kept (ceil(0.7 * 3) of those >= 0.5), in qid order
    assert list(training.select(rows[rows.kind == "sft"], None, None, max_rows=2).qid) == ["a", "d"]  # the two highest
    assert list(training.select(rows[rows.kind == "rl"], None, None, None).qid) == ["e", "f"]


def test_sft_examples_end_with_an_answer_the_evaluation_reads():
    reasoning = "Heparin acts through antithrombin. Protamine binds it. So protamine reverses heparin."
    row = {"question": "Which drug reverses heparin?", "context": None, "options": OPTIONS, "answer": "B", "answer_format": "letter",
           "reasoning": reasoning, "response": "Protamine."}  # fmt: skip
    example = training.sft_example(row, Chat(prompt="cot", think="strip"), max_reasoning_words=8)
    reply = example["completion"][0]["content"]
    assert reply == "<think>\nProtamine binds it. So protamine reverses heparin.\n</think>\nAnswer: B"
    assert example["prompt"][-1]["content"].endswith("in the form 'Answer: X'.")
    assert extract_answer(reply, OPTIONS, "letter", think="strip").answer == "B"
    pubmed = {**row, "options": YNM, "answer": "C", "answer_format": "yes_no_maybe"}
    assert training.sft_example(pubmed, Chat(), None)["completion"][0]["content"].endswith("</think>\nAnswer: maybe")


def test_adversarial_rl_prompts_continue_inside_the_think_block(smollm_tokenizer):
    row = {"question": "Which drug reverses heparin?", "context": None, "options": OPTIONS, "answer": "B", "answer_format": "letter"}
    chat = Chat(prompt="cot", think="strip")
    clean = training.rl_example(row, chat, smollm_tokenizer)
    assert clean["prompt"].endswith("<|im_start|>assistant\n") and not clean["prefilled_think"] and not clean["adversarial"]
    adv = training.rl_example(row, chat, smollm_tokenizer, trace="Vitamin K restores clotting factors.\nAnswer: A")
    assert adv["prompt"].endswith(
        "<|im_start|>assistant\n<think>\nVitamin K restores clotting factors.\nAnswer: A\n\nWait, let me reconsider. Looking at the options again,"
    )
    assert adv["prefilled_think"] and adv["adversarial"] and json.loads(adv["options"]) == OPTIONS


def test_bad_training_rows_are_named_by_file_and_line(tmp_path):
    shutil.copytree(DEMO / "training", tmp_path / "training")
    prompts = tmp_path / "training/rl_prompts.jsonl"
    lines = prompts.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["answer_idx"] = "Z"
    lines[2] = json.dumps(bad)
    lines[5] = lines[5][:40]
    prompts.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError) as err:
        training.load(catalog.training(), "demo", tmp_path)
    message = str(err.value)
    assert f"{prompts}:3: field 'answer': answer is one of the option letters" in message
    assert f"{prompts}:6: field '<row>': not valid JSON" in message


def test_the_demo_training_data_loads_and_the_mirror_layout_is_declared(tmp_path):
    rows, skipped, files, _ = training.load(catalog.training(), "demo", DEMO)
    assert set(files) == {"medical_o1", "demo_rl"} and "m23k_clean" in skipped
    assert (rows[rows.kind == "sft"].reasoning.str.len() > 0).all() and rows[rows.kind == "rl"].answer.notna().all()
    io.save("sft_data", rows[rows.kind == "sft"].assign(p_reasoning=0.5), tmp_path)  # the schema accepts what the loader gives


def test_the_mirror_gives_medical_o1_rows_and_pubmedqa_outside_its_test_split(mirror):
    rows, _, files, _ = training.load(catalog.training(), "mirror", mirror.parent)
    assert (rows.dataset == "medical_o1").sum() == 198
    train = set(rows[rows.dataset == "pubmedqa_train"].qid)
    test = set(json.loads((mirror / "pubmedqa/test_ground_truth.json").read_text()))
    assert len(train) == 500 and not train & test


def test_lora_training_saves_merged_full_weights(tmp_path, smollm_tokenizer):
    """sft.lora: peft adapters train, and the saved checkpoint is plain merged weights the evaluation loads."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from registry import trainers
    from registry.params import Lora

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(smollm_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True)  # fmt: skip
    base = LlamaForCausalLM(config)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rows = training.load(catalog.training(), "demo", DEMO)[0].query("kind == 'sft'").head(4).to_dict("records")
    examples = [training.sft_example(r, Chat(), 20) for r in rows]
    p = type("P", (), {"lora": Lora(r=4, alpha=8, dropout=0.0, target_modules="all-linear")})()
    args = SFTConfig(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-2, use_cpu=True,
                     report_to="none", save_strategy="no", completion_only_loss=True, max_length=None)  # fmt: skip
    trainer = SFTTrainer(model=base, args=args, train_dataset=Dataset.from_list(examples), processing_class=smollm_tokenizer,
                         peft_config=trainers.lora_config(p))  # fmt: skip
    trainer.train()
    out = tmp_path / "checkpoint"
    trainers.save_checkpoint(trainer, smollm_tokenizer, out, "# card\n", {"base": "tiny"}, tmp_path / "staging")
    assert not list(out.glob("adapter_*")) and (out / "model.safetensors").exists() and (out / "README.md").exists()
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert merged.keys() == before.keys()  # plain weights, no lora_A / lora_B
    changed = [k for k in before if not torch.equal(before[k], merged[k])]
    assert changed and all("proj" in k for k in changed)  # only the adapted linear layers moved


def test_live_ends_when_a_parallel_experiment_removed_the_signal_file(tmp_path, monkeypatch):
    """Two queued experiments ending together: both see DVCLive's step signal file, the other one removes it first."""
    import dvclive
    import dvclive.vscode

    from registry.live import Live

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # what `dvc queue` sets: the signal lives in the main project
    signal = tmp_path / ".dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED"
    real_exists = dvclive.vscode.os.path.exists
    monkeypatch.setattr(dvclive.vscode.os.path, "exists", lambda p: p == str(signal) or real_exists(p))
    for cls, name in ((dvclive.Live, "upstream"), (Live, "ours")):
        live = cls(dir=str(tmp_path / name), save_dvc_exp=False, dvcyaml=None, report=None)
        live.log_metric("loss", 1.0)
        live.next_step()
        assert signal.exists()
        signal.unlink()  # the parallel experiment's end()
        if cls is dvclive.Live:
            with pytest.raises(FileNotFoundError):
                live.end()
        else:
            live.end()
        assert json.loads((tmp_path / name / "metrics.json").read_text())["loss"] == 1.0


def test_dvclive_logs_leave_wall_clock_metrics_out(tmp_path):
    """The committed DVCLive logs must rebuild byte for byte: runtime, throughput and step time go to `timings`, not there."""
    from registry.live import Live, is_timing

    with Live(dir=str(tmp_path), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for name in ("loss", "train/runtime", "train/samples_per_second", "step_time", "tokens_per_second", "rewards/accuracy/mean"):
            live.log_metric(name, 1.5)
        live.next_step()
    logged = {p.relative_to(tmp_path / "plots/metrics").as_posix() for p in (tmp_path / "plots/metrics").rglob("*.tsv")}
    assert logged == {"loss.tsv", "rewards/accuracy/mean.tsv"}
    assert not is_timing("grad_norm") and is_timing("train/steps_per_second")
