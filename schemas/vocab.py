"""The enumerations shared by the schemas, the catalogs and params: each declared once, here."""

import string
from typing import Literal, get_args

LETTERS = string.ascii_uppercase  # option letters, in order

Category = Literal["reasoning", "knowledge"]  # the reasoning-vs-knowledge axis of a question
AnswerFormat = Literal["letter", "yes_no_maybe"]
Source = Literal["demo", "mirror", "hub"]  # where ingest reads questions
Backend = Literal["transformers", "vllm", "openai"]
Protocol = Literal["prefill", "turn"]  # how an adversarial trace is put in front of a model


def values(literal: object) -> list[str]:
    """List the allowed values of one of the Literal types above (e.g. of Category)."""
    return list(get_args(literal))
