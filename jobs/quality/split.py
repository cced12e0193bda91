"""Split validated rows into good rows and quarantined rows (pure DataFrame transforms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FAILED_COLUMN = "_failed"
FAILED_EXPECTATIONS_COLUMN = "_failed_expectations"


def is_good_row() -> Column:
    """True for a row that failed nothing: ``_failed`` null or empty (never null itself)."""
    return F.col(FAILED_COLUMN).isNull() | (F.size(FAILED_COLUMN) == 0)


def split_verdicts(df: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Good rows and quarantine rows of a DataFrame with a ``_failed`` array<string> column.

    Args:
        df: Validated rows; ``_failed`` lists what each row failed (null or empty: nothing).

    Returns:
        ``(good_df, quarantine_df)``: good rows without ``_failed``; the other rows with
        ``_failed`` renamed ``_failed_expectations`` (same position).
    """
    good_df = df.filter(is_good_row()).drop(FAILED_COLUMN)
    quarantine_df = df.filter(~is_good_row()).withColumnRenamed(FAILED_COLUMN, FAILED_EXPECTATIONS_COLUMN)
    return good_df, quarantine_df
