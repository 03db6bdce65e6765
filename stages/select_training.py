"""Stage select_training: load the training datasets, drop what overlaps any evaluation question, keep the reasoning-heavy rows."""

from pathlib import Path

import pandas as pd

from registry import catalog, classifier, io, training
from registry.errors import run_stage
from registry.params import load_params
from stages import pin_cpu


def main() -> None:
    """Write data/train/sft.parquet, rl.parquet and contaminated.parquet, and per-dataset counts."""
    params = load_params()
    p = params.train_data
    pin_cpu(params.cpu.threads)
    root = Path(p.demo_dir if p.source == "demo" else p.mirror_dir)
    rows, skipped, files, revisions = training.load(catalog.training(), p.source, root, p.datasets, p.allow_unpinned, params.hub.twin)
    questions = io.load("questions")
    d = p.decontaminate
    dirty = training.decontaminate(rows, questions, d.ngram, d.min_ngram_share, d.common, d.min_ratio)
    clean = rows.merge(dirty[["dataset", "qid"]], on=["dataset", "qid"], how="left", indicator=True)
    clean = clean[clean["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)
    model = classifier.LabelingModel.load(catalog.dataset_path("classifier"), quantize=params.label.quantize, device=params.classifier.device)
    clean["p_reasoning"] = model.predict_proba(clean, params.label.batch_size)
    kept = pd.concat([training.select(clean[clean["kind"] == k], s.min_p_reasoning, s.top_share, s.max_rows) for k, s in p.select.items()])
    io.save("sft_data", kept[kept["kind"] == "sft"].reset_index(drop=True))
    io.save("rl_data", kept[kept["kind"] == "rl"].reset_index(drop=True))
    io.save("contaminated", dirty)

    metrics = {"source": p.source, "datasets": {}, "skipped": skipped, "revisions": revisions}
    for name in files:
        scored = clean.loc[clean["dataset"] == name, "p_reasoning"]
        metrics["datasets"][name] = {
            "kind": catalog.training()[name].kind,
            "rows": int((rows["dataset"] == name).sum()),
            "contaminated": int((dirty["dataset"] == name).sum()),
            "kept": int((kept["dataset"] == name).sum()),
            "mean_p_reasoning": round(float(scored.mean()), 4) if len(scored) else None,
        }
    metrics["sft_rows"], metrics["rl_rows"] = int((kept["kind"] == "sft").sum()), int((kept["kind"] == "rl").sum())
    io.save("train_data_metrics", metrics)
    for name, m in metrics["datasets"].items():
        print(f"  {name:<26} {m['kind']:<4} {m['rows']:>6} rows  {m['contaminated']:>5} contaminated  {m['kept']:>6} kept  ({files[name]})")
    for name, why in skipped.items():
        print(f"  {name:<26} skipped: {why}")
    for r in dirty.itertuples():
        print(f"  contaminated: {r.dataset}/{r.qid} matches {r.benchmark}/{r.benchmark_qid} ({r.reason}: {r.evidence[:60]!r})")
    print(f"training data: {metrics['sft_rows']} SFT rows, {metrics['rl_rows']} RL prompts ({p.source})")


if __name__ == "__main__":
    run_stage(main)
