"""medreg: a DVC-versioned registry of biomedical QA benchmarks, splits, models and results."""

__version__ = "0.1.0"
