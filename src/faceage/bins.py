"""Age bins: parse "0-20,21-26,27-35,36-50,51+", quantile bins, bin probabilities from an age distribution.

Ages are whole years. A bin ``a-b`` holds ages ``a <= age <= b``; ``a+`` holds every age from ``a`` on. Bins must
start at 0, be in increasing order, leave no gap and not overlap, and the last one must be open (``a+``), so every
age has exactly one bin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceage.errors import BinsError

DEFAULT_BINS_SPEC = "0-20,21-26,27-35,36-50,51+"
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_OPEN = re.compile(r"^\s*(\d+)\s*\+\s*$")
_QUANTILE = re.compile(r"^\s*quantile\s*:\s*(\d+)\s*$")


@dataclass(frozen=True)
class AgeBins:
    """Contiguous age bins given by their lower edges; the last bin is open-ended."""

    lower_edges: tuple[int, ...]

    def __post_init__(self) -> None:
        edges = self.lower_edges
        if len(edges) < 2:
            raise BinsError(f"need at least two age bins, got {len(edges)}: give e.g. '{DEFAULT_BINS_SPEC}'")
        if edges[0] != 0:
            raise BinsError(f"the first age bin must start at 0, not {edges[0]}: every age needs a bin")
        for a, b in zip(edges, edges[1:], strict=False):
            if b <= a:
                raise BinsError(f"age bins must be in increasing order without overlap: {a} is followed by {b}")

    # --- construction -------------------------------------------------------------------------------------------
    @classmethod
    def default(cls) -> AgeBins:
        """The study's five balanced classes: 0-20, 21-26, 27-35, 36-50, 51+."""
        return cls.parse(DEFAULT_BINS_SPEC)

    @classmethod
    def parse(cls, spec: str, train_ages: Sequence[float] | None = None) -> AgeBins:
        """Parse ``"0-12,13-17,18-24,25+"`` or ``"quantile:K"`` (the latter needs the training split's ages)."""
        spec = spec.strip()
        quantile = _QUANTILE.match(spec)
        if quantile:
            if train_ages is None:
                raise BinsError(f"'{spec}' needs the training split's ages; use it where a manifest is given")
            return cls.from_quantiles(train_ages, int(quantile.group(1)))
        parts = [p for p in spec.split(",")]
        if any(not p.strip() for p in parts):
            raise BinsError(f"empty bin in '{spec}': write bins like '{DEFAULT_BINS_SPEC}'")
        edges: list[int] = []
        previous_upper: int | None = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            m_range, m_open = _RANGE.match(part), _OPEN.match(part)
            if m_open:
                if not last:
                    raise BinsError(f"open bin '{part.strip()}' must be the last one in '{spec}'")
                lo, hi = int(m_open.group(1)), None
            elif m_range:
                lo, hi = int(m_range.group(1)), int(m_range.group(2))
                if hi < lo:
                    raise BinsError(f"bin '{part.strip()}' ends before it starts: write low-high, e.g. 21-26")
                if last:
                    raise BinsError(
                        f"the last bin '{part.strip()}' must be open-ended so every age has a bin: "
                        f"write '{lo}+' (or add a bin '{hi + 1}+')"
                    )
            else:
                raise BinsError(f"cannot read bin '{part.strip()}' in '{spec}': write 'low-high' or 'low+'")
            if previous_upper is not None:
                if lo > previous_upper + 1:
                    raise BinsError(f"gap between bins: ages {previous_upper + 1}-{lo - 1} have no bin in '{spec}'")
                if lo <= previous_upper:
                    raise BinsError(f"bins overlap or are out of order at '{part.strip()}' in '{spec}'")
            edges.append(lo)
            previous_upper = hi
        return cls(tuple(edges))

    @classmethod
    def from_quantiles(cls, ages: Sequence[float], k: int) -> AgeBins:
        """K bins holding about equal shares of ``ages`` (use the training split only)."""
        if k < 2:
            raise BinsError(f"quantile:{k} gives fewer than two bins; use quantile:5 for example")
        values = np.asarray(ages, dtype=float)
        if values.size < k:
            raise BinsError(f"quantile:{k} needs at least {k} ages, got {values.size}")
        # upper edge of bin i is the (i+1)/k quantile; the next bin starts one year later
        uppers = np.quantile(values, [i / k for i in range(1, k)], method="lower")
        edges = [0] + sorted({int(u) + 1 for u in uppers})
        if len(edges) < k:
            raise BinsError(f"the ages are too concentrated for {k} distinct quantile bins; use fewer")
        return cls(tuple(edges))

    # --- use ------------------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        edges = self.lower_edges
        out = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:], strict=False)]
        return out + [f"{edges[-1]}+"]

    @property
    def spec(self) -> str:
        return ",".join(self.labels)

    def __len__(self) -> int:
        return len(self.lower_edges)

    def __str__(self) -> str:
        return self.spec

    def index(self, age: float | np.ndarray) -> int | np.ndarray:
        """Bin index of an age (or array of ages); fractional ages are floored to whole years."""
        years = np.floor(np.asarray(age, dtype=float))
        if np.any(years < 0) or np.any(~np.isfinite(years)):
            raise BinsError(f"ages must be finite and non-negative, got {age!r}")
        idx = np.searchsorted(np.asarray(self.lower_edges), years, side="right") - 1
        return int(idx) if np.ndim(idx) == 0 else idx

    def label(self, age: float) -> str:
        return self.labels[int(self.index(age))]

    def probabilities(self, age_probs: np.ndarray, ages: np.ndarray | None = None, age_map=None) -> np.ndarray:
        """Probability mass in each bin from a distribution over whole-year ages (last axis).

        ``ages`` gives the age of each column (default 0, 1, 2, ...). The result sums to 1 along the last axis
        when the input does. ``age_map`` (a :class:`faceage.distribution.AgeMap`) first carries the distribution of
        whole years 0, 1, 2, ... through that monotone map: year a's mass, spread evenly over [a - 0.5, a + 0.5),
        falls in a bin where its mapped age does, so a bin's share is the mass between its edges mapped back (the
        first bin keeps what falls below 0).
        """
        probs = np.asarray(age_probs, dtype=float)
        if age_map is not None:
            if ages is not None:
                raise BinsError("an age map carries a distribution over whole years 0, 1, 2, ...; give no other ages")
            # cdf[..., k]: the mass below k - 0.5 years, linear in between; read at the bin edges mapped back
            cdf = np.concatenate([np.zeros(probs.shape[:-1] + (1,)), np.cumsum(probs, axis=-1)], axis=-1)
            edges = age_map.inverse(np.asarray(self.lower_edges[1:], dtype=float) - 0.5) + 0.5
            at = np.clip(edges, 0.0, probs.shape[-1])
            k = np.minimum(np.floor(at).astype(int), probs.shape[-1] - 1)
            below = cdf[..., k] * (1.0 - (at - k)) + cdf[..., k + 1] * (at - k)
            total = cdf[..., -1:]
            return np.diff(np.concatenate([np.zeros_like(total), below, total], axis=-1), axis=-1)
        columns = np.arange(probs.shape[-1]) if ages is None else np.asarray(ages)
        owner = self.index(columns)
        out = np.zeros(probs.shape[:-1] + (len(self),), dtype=float)
        for b in range(len(self)):
            out[..., b] = probs[..., owner == b].sum(axis=-1)
        return out
