"""Stage adversarial@<model>: the model answers after a misleading trace (prefill or turn protocol)."""

from registry import catalog, io
from registry.adversarial import RECONSIDER_CUE, evaluate_adversarial
from registry.errors import MedregError, run_stage
from registry.evaluate import select_questions, with_prompt
from registry.generation import CompletionCache, Generator, generation_settings, pinned_weights
from registry.params import load_params
from stages import pin_cpu


def main(name: str) -> None:
    """Evaluate model `name` on the adversarial traces of the clean evaluation's questions."""
    params = load_params()
    ev, adv = params.evaluate, params.adversarial
    pin_cpu(params.cpu.threads)
    model = with_prompt(catalog.model(name), ev.prompt)
    rows = select_questions(io.load("questions"), io.load("splits"), ev.questions.benchmarks, ev.questions.limit, ev.questions.seed)
    traces = io.load("adversarial_traces")
    if traces.merge(rows, on=["benchmark", "qid"]).empty:
        raise MedregError(
            f"no adversarial traces for the selected questions (all dropped?): see {catalog.dataset_path('adversarial_traces_metrics')}"
        )
    cache = CompletionCache(catalog.dataset_path("adversarial_completions", model=name))
    weights = pinned_weights(catalog.dataset_path("model_pins") / f"{model.name}.json")
    generator = Generator(model, ev.runtime, generation_settings(model, ev.generation), cache, weights)
    preds = evaluate_adversarial(generator, rows, traces, adv.protocol, adv.cue or RECONSIDER_CUE)
    io.save("adversarial_predictions", preds, model=name)
    for category, g in preds.groupby("category"):
        print(f"  {category:<10} n={len(g):>4}  accuracy {g['correct'].mean():6.1%}  took the bait {g['took_bait'].mean():6.1%}")
    print(f"{name} ({adv.protocol}): adversarial accuracy {preds['correct'].mean():.1%} on {len(preds)} question x trace pairs")


if __name__ == "__main__":
    run_stage(main)
