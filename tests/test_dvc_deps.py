"""dvc.yaml declares every dependency a stage really has, so an edit never leaves a stale output that `dvc repro` calls up to date.

For each stage (foreach stages expanded by DVC itself) this derives, from the code:
- the local modules it imports, transitively (and package __init__ files that hold code),
- the catalogs it reads (benchmarks.yaml, models.yaml: whole file or the model's key; datasets.yaml: the datasets it uses),
- the datasets it loads (must be deps) and saves (must be outs), and the schema modules that validate them,
- for stages that load a language model, that model's pin (models/pins/<model>.json),
and fails naming every one that dvc.yaml misses.
"""

import ast
import re
import shutil
import subprocess
from pathlib import Path

import yaml
from dvc.repo import Repo

from registry import catalog

from .conftest import ROOT

PACKAGES = ("registry", "schemas", "stages")


def module_file(root: Path, name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def holds_code(path: Path) -> bool:
    """A package __init__ counts when it does more than a docstring and constants."""
    return any(not isinstance(node, ast.Expr | ast.Assign) for node in ast.parse(path.read_text()).body)


def closure(root: Path, module: str) -> set[Path]:
    """The stage module and every local module it imports, transitively (imports inside functions included)."""
    start = module_file(root, module)
    seen: set[Path] = set()
    todo = [start, root / module.split(".")[0] / "__init__.py"]
    while todo:
        path = todo.pop()
        if path is None or path in seen or (path.name == "__init__.py" and not holds_code(path)):
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in PACKAGES:
                    todo += [module_file(root, ".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return seen


CALL = r"{}\(\s*\"([a-z_]+)\""
GENERATOR_OF = {  # stages that generate with a model named in params (foreach stages: their item)
    "adversarial_traces": lambda params: params["adversarial"]["traces"]["generator"],
    "rl_traces": lambda params: params["grpo"]["traces"]["generator"],
}


def undeclared(root: Path) -> list[str]:
    """One line per dependency or output a stage uses but dvc.yaml does not declare."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    datasets = yaml.safe_load((root / "registry/datasets.yaml").read_text())["datasets"]
    models_yaml = yaml.safe_load((root / "registry/models.yaml").read_text())
    all_models = set(params["evaluate"]["models"]) | set(params["adversarial"]["models"])
    problems = []
    with Repo(str(root)) as repo:
        stages = list(repo.index.stages)
    for stage in stages:
        m = re.search(r"-m (stages\.\w+)(?: (\S+))?$", stage.cmd)
        assert m, f"stage {stage.name}: cmd is not `python -m stages.<name> [item]`"
        item = m.group(2)
        deps = {d.def_path for d in stage.deps if not hasattr(d, "params")}
        keys = {d.def_path: set(d.params) for d in stage.deps if hasattr(d, "params")}
        outs = {o.def_path for o in stage.outs}

        def covered(path: str, declared: set[str]) -> bool:
            return any(path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path.rstrip("/") + "/") for d in declared)

        files = closure(root, m.group(1))
        source = "\n".join(p.read_text() for p in files)
        for path in sorted(p.relative_to(root).as_posix() for p in files):
            if path not in deps:
                problems.append(f"{stage.name}: imports {path}, not in deps")
        if "catalog.training(" in source and "registry/training.yaml" not in deps:
            problems.append(f"{stage.name}: reads registry/training.yaml, not in deps")
        if "catalog.benchmarks(" in source and "registry/benchmarks.yaml" not in deps:
            problems.append(f"{stage.name}: reads registry/benchmarks.yaml, not in deps")
        if "catalog.models(" in source and "registry/models.yaml" not in deps:
            problems.append(f"{stage.name}: reads every entry of registry/models.yaml, not in deps")
        entry_keys = keys.get("registry/models.yaml", ())
        if "catalog.model(" in source and "registry/models.yaml" not in deps and not any(k.startswith("models.") for k in entry_keys):
            problems.append(f"{stage.name}: reads a model's entry of registry/models.yaml, not in params")
        stage_source = module_file(root, m.group(1)).read_text()
        if "Generator(" in stage_source:  # generates with a catalog model: its pin (or its weights' folder) is a dependency
            wanted = item or GENERATOR_OF[stage.name](params)
            local = models_yaml["models"][wanted]["source"].get("local")
            if f"models/pins/{wanted}.json" not in deps and not (local and covered(local["path"], deps)):
                problems.append(f"{stage.name}: loads model {wanted}, but models/pins/{wanted}.json is not in deps")
        if "trainers.setup(" in stage_source:  # trains from a catalog model's weights
            section = m.group(1).split(".")[1]
            local = models_yaml["models"][params[section]["base_model"]]["source"].get("local")
            if local and not covered(local["path"], deps):
                problems.append(f"{stage.name}: trains from {local['path']}, not in deps")
        used = {(kind, name) for kind in ("load", "save", "dataset_path") for name in re.findall(CALL.format(re.escape(kind)), source)}
        declared_keys = keys.get("registry/datasets.yaml", set())
        for kind, name in sorted(used):
            entry = datasets.get(name)
            if entry is None:
                problems.append(f"{stage.name}: uses dataset '{name}', which registry/datasets.yaml does not declare")
                continue
            if entry.get("versioned") is False:  # outside git and DVC by design (timings): neither a dependency nor an output
                continue
            if f"datasets.{name}" not in declared_keys and "datasets" not in declared_keys:
                problems.append(f"{stage.name}: uses dataset '{name}', but registry/datasets.yaml: datasets.{name} is not in params")
            if entry.get("schema") and kind == "save":
                module = entry["schema"].rsplit(".", 1)[0].replace(".", "/") + ".py"
                if module not in deps:
                    problems.append(f"{stage.name}: validates '{name}' with {module}, not in deps")
            models = [item] if item else sorted(all_models)
            paths = {entry["path"].format(model=mm) for mm in models} if "{model}" in entry["path"] else {entry["path"]}
            for path in sorted(paths):
                if kind == "load" and not covered(path, deps | outs):  # a stage may read its own previous output
                    problems.append(f"{stage.name}: loads {path} ('{name}'), not in deps")
                if kind == "save" and not covered(path, outs):
                    problems.append(f"{stage.name}: saves {path} ('{name}'), not in outs")
                if kind == "dataset_path" and not covered(path, deps | outs):
                    problems.append(f"{stage.name}: touches {path} ('{name}'), neither in deps nor in outs")
    return problems


def test_every_stage_declares_what_it_imports_reads_and_writes():
    assert undeclared(ROOT) == []


def test_a_missing_dependency_is_reported(tmp_path):
    for rel in ("dvc.yaml", "params.yaml", ".dvc/config"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for package in (*PACKAGES, "data/demo"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc_yaml = (tmp_path / "dvc.yaml").read_text()
    dvc_yaml = dvc_yaml.replace("        - registry/prompts.py\n", "", 1)  # from evaluate@<model>
    dvc_yaml = dvc_yaml.replace("        - models/pins/${item}.json\n", "", 1)
    dvc_yaml = dvc_yaml.replace("          - datasets.quarantine\n", "", 1)
    (tmp_path / "dvc.yaml").write_text(dvc_yaml)
    found = "\n".join(undeclared(tmp_path))
    assert "evaluate@smollm2-135m-instruct: imports registry/prompts.py, not in deps" in found
    assert "evaluate@smollm2-135m-instruct: loads model smollm2-135m-instruct, but models/pins/smollm2-135m-instruct.json is not in deps" in found
    assert "ingest: uses dataset 'quarantine', but registry/datasets.yaml: datasets.quarantine is not in params" in found


def test_model_names_are_dvc_param_keys():
    """Each evaluate@<model> depends on `models.<name>` of the catalog: names with dots would break that key."""
    for name in catalog.models():
        assert re.fullmatch(catalog.NAME, name) and "." not in name
