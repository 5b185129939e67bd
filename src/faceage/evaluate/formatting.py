"""How figures are written in tables, reports and cards: shares as percentages, missing values as "-"."""

from __future__ import annotations


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)
