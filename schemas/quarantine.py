"""Schema of rejected input rows (`data/quarantine/quarantine.parquet`)."""

import pandera.pandas as pa
from pandera.typing import Series


class QuarantineSchema(pa.DataFrameModel):
    """One row per rejected input row, with every reason it was rejected (one per line) and its raw text."""

    benchmark: Series[str]
    qid: Series[str] = pa.Field(nullable=True)
    source_file: Series[str]
    source_row: Series[str]
    errors: Series[str] = pa.Field(str_length={"min_value": 1})
    raw: Series[str] = pa.Field(nullable=True)

    class Config:
        strict = True
        ordered = True
