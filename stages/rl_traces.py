"""Stage rl_traces: misleading traces toward a wrong option for a seeded share of the RL training prompts (adversarial GRPO)."""

import numpy as np

from registry import catalog, io
from registry.adversarial import generate_traces
from registry.backends import pin, pin_digest
from registry.errors import MedregError, run_stage
from registry.generation import CompletionCache, Generator, generation_settings
from registry.params import load_params
from stages import pin_cpu


def main() -> None:
    """Pick grpo.adversarial_share of rl.parquet (seeded) and have grpo.traces.generator argue for a wrong option."""
    params = load_params()
    p = params.grpo.traces
    if p.source != "model":
        raise MedregError("grpo.traces.source: training traces come from a generator model (the study's traces exist for evaluation questions only)")
    rows = io.load("rl_data")
    rng = np.random.default_rng(p.seed)
    chosen = rows.iloc[sorted(rng.permutation(len(rows))[: round(params.grpo.adversarial_share * len(rows))])]
    chosen = chosen[chosen["answer_format"] != "free_text"].rename(columns={"dataset": "benchmark"})
    if len(chosen):
        pin_cpu(params.cpu.threads)
        model = catalog.model(p.generator)
        cache = CompletionCache(catalog.dataset_path("rl_traces_cache"))
        weights = pin_digest(pin(model))  # computed here: the pins are written after training, which needs these traces
        generator = Generator(model, params.evaluate.runtime, generation_settings(model, p.generation), cache, weights)
        traces, dropped = generate_traces(chosen, generator, p.per_question, p.max_attempts, p.retry_temperature, p.seed)
    else:
        traces, dropped = io.empty("rl_traces"), []
    traces = traces.rename(columns={"benchmark": "dataset"})
    io.save("rl_traces", traces.sort_values(["dataset", "qid", "trace_index"]).reset_index(drop=True))
    metrics = {"rl_prompts": len(rows), "chosen": len(chosen), "traces": len(traces), "dropped": len(dropped), "generator": p.generator}
    io.save("rl_traces_metrics", metrics)
    print(f"{len(traces)} training traces for {len(chosen)} of {len(rows)} RL prompts; {len(dropped)} dropped (off target)")


if __name__ == "__main__":
    run_stage(main)
