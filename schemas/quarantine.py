"""Schema of rejected input rows (`data/quarantine/quarantine.parquet`)."""

import pandera.pandas as pa
from pandera.typing import Series


class QuarantineSchema(pa.DataFrameModel):
    """One row per rejected input row, with every reason it was rejected (one per line) and its raw text."""

    benchmark: Series[str] = pa.Field(description="Benchmark the rejected input row came from.")
    qid: Series[str] = pa.Field(nullable=True, description="Question id of the rejected row, where one could be read; else null.")
    source_file: Series[str] = pa.Field(description="File (or Hub dataset) the row was read from, as ingest displays it.")
    source_row: Series[str] = pa.Field(description="Key of the row in its source: line number, JSON object key or list index.")
    errors: Series[str] = pa.Field(str_length={"min_value": 1}, description="Every reason the row was rejected, one per line (field: problem).")
    raw: Series[str] = pa.Field(nullable=True, description="The row's raw text as read (undecodable bytes escaped); null when unavailable.")

    class Config:
        strict = True
        ordered = True
