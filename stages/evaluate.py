"""Stage evaluate@<model>: ask one catalog model every selected question; write its graded predictions."""

from registry import catalog, io
from registry.errors import run_stage
from registry.evaluate import evaluate, select_questions, with_prompt
from registry.generation import CompletionCache, Generator, generation_settings, pinned_weights
from registry.params import load_params
from stages import pin_cpu


def main(name: str) -> None:
    """Evaluate model `name` under the `evaluate` params."""
    params = load_params()
    ev = params.evaluate
    pin_cpu(params.cpu.threads)
    model = with_prompt(catalog.model(name), ev.prompt)
    rows = select_questions(io.load("questions"), io.load("splits"), ev.questions.benchmarks, ev.questions.limit, ev.questions.seed)
    cache = CompletionCache(catalog.dataset_path("completions", model=name))
    if cache.torn:
        print(f"{cache.path}: dropped {cache.torn} torn line(s) left by an interrupted run")
    weights = pinned_weights(catalog.dataset_path("model_pins") / f"{model.name}.json")
    generator = Generator(model, ev.runtime, generation_settings(model, ev.generation), cache, weights)
    print(f"{name}: {len(rows)} questions, backend {generator.backend_name}, {generator.gen}")
    preds = evaluate(generator, rows)
    io.save("predictions", preds, model=name)
    io.save("timings", generator.timing_report(), stage=f"evaluate@{name}")
    for (bench, category), g in preds.groupby(["benchmark", "category"]):
        print(f"  {bench:<24} {category:<10} n={len(g):>4}  accuracy {g['correct'].mean():6.1%}  unparsed {g['parse_failed'].mean():6.1%}")
    print(f"{name}: accuracy {preds['correct'].mean():.1%} on {len(preds)} questions; {int(preds['tokens'].sum())} tokens generated")


if __name__ == "__main__":
    run_stage(main)
