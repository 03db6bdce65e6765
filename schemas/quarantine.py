"""Schema of rejected input rows (`data/raw/quarantine.parquet`)."""

import pandera.pandas as pa
import pyarrow
from pandera.typing import Series


class QuarantineSchema(pa.DataFrameModel):
    """One row per rejected input row, with every reason it was rejected."""

    benchmark: Series[str]
    qid: Series[str] = pa.Field(nullable=True)
    source_file: Series[str]
    source_row: Series[str]
    errors: Series[str] = pa.Field(str_length={"min_value": 1})
    raw: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True


ARROW_SCHEMA = pyarrow.schema([(name, pyarrow.string()) for name in ("benchmark", "qid", "source_file", "source_row", "errors", "raw")])
"""Parquet layout; `errors` holds one reason per line."""
