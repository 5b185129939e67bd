"""How figures are written in tables, reports and cards: shares as percentages, missing values as "-"."""

from __future__ import annotations


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def with_interval(value: float | None, interval: tuple[float, float] | list[float] | None, fmt=pct) -> str:
    """``66.5% (65.0%-68.0%)``: a figure and its 95% interval, each written by ``fmt`` (:func:`pct` or :func:`num`)."""
    if interval is None:
        return fmt(value)
    return f"{fmt(value)} ({fmt(interval[0])}-{fmt(interval[1])})"


def accuracy_cell(headline: dict) -> str:
    """The bin accuracy of an evaluation's headline with its 95% interval, as the CLI, report and card write it."""
    return with_interval(headline["acc"], headline["acc_ci"])


def mae_cell(headline: dict) -> str:
    """The MAE of an evaluation's headline with its 95% interval, as the CLI, report and card write it."""
    return with_interval(headline["mae"], headline["mae_ci"], num)
