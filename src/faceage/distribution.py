"""From a probability distribution over ages to an age, an interval and bin probabilities (numpy only).

The age models predict a distribution over whole years 0, 1, …, 100 (100 meaning "100 or more"). The age estimate is
its expected value; the interval runs between two quantiles of it (80%: the 10th and 90th percentiles, linearly
interpolated inside a year); bin probabilities are the mass inside each bin. A model may carry an age correction
(``faceage.train.offset``): an :class:`AgeMap`, a monotone map of ages (an offset moves every age by the same years;
a quantile mapping stretches the ends of the age range). The distribution is carried through it first, so the
estimate (the mean of the mapped distribution), the interval (the mapped quantiles) and the bin probabilities (the
mass whose mapped age falls in the bin) stay one consistent answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceage.errors import FaceageError

if TYPE_CHECKING:
    from faceage.bins import AgeBins

MAX_AGE_CLASS = 100
AGES = np.arange(MAX_AGE_CLASS + 1, dtype=np.float64)


# the mass of year a lies evenly over [a - 0.5, a + 0.5): a mapped year's mean is its map's mean over 16 points there
_WITHIN_YEAR = (np.arange(16) + 0.5) / 16 - 0.5


@dataclass(frozen=True)
class AgeMap:
    """A strictly increasing map of ages, linear between the knots ``sources[i] → targets[i]`` and with slope 1
    beyond the ends (an offset is one knot pair moved by the same years)."""

    sources: tuple[float, ...]
    targets: tuple[float, ...]

    def __post_init__(self):
        sources, targets = np.asarray(self.sources, dtype=float), np.asarray(self.targets, dtype=float)
        if sources.ndim != 1 or sources.shape != targets.shape or len(sources) < 2:
            raise FaceageError("an age map needs two or more (source, target) knots of equal number")
        if not (np.all(np.isfinite(sources)) and np.all(np.isfinite(targets))):
            raise FaceageError("an age map's knots must be finite numbers")
        if np.any(np.diff(sources) <= 0) or np.any(np.diff(targets) <= 0):
            raise FaceageError("an age map must be strictly increasing (its knots in increasing order, both sides)")

    @classmethod
    def shift(cls, years: float) -> AgeMap:
        """Every age moved by ``years``."""
        return cls((0.0, float(MAX_AGE_CLASS)), (float(years), MAX_AGE_CLASS + float(years)))

    @classmethod
    def from_metadata(cls, values: dict) -> AgeMap:
        return cls(tuple(float(v) for v in values["sources"]), tuple(float(v) for v in values["targets"]))

    def forward(self, ages) -> np.ndarray:
        return self._through(np.asarray(ages, dtype=float), self.sources, self.targets)

    def inverse(self, ages) -> np.ndarray:
        return self._through(np.asarray(ages, dtype=float), self.targets, self.sources)

    @staticmethod
    def _through(ages: np.ndarray, xs, ys) -> np.ndarray:
        out = np.interp(ages, xs, ys)
        out = np.where(ages < xs[0], ys[0] + (ages - xs[0]), out)
        return np.where(ages > xs[-1], ys[-1] + (ages - xs[-1]), out)

    def year_means(self, years: int) -> np.ndarray:
        """The mapped mean of each whole year 0 … years-1 (its mass spread evenly over the year)."""
        return self.forward(np.arange(years, dtype=float)[:, None] + _WITHIN_YEAR).mean(axis=1)


def expected_age(probs: np.ndarray, age_map: AgeMap | None = None) -> np.ndarray:
    """The distribution's mean, carried through ``age_map`` (a model's measured correction; never below 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    if age_map is None:
        return probs @ AGES[: probs.shape[-1]]
    return np.maximum(probs @ age_map.year_means(probs.shape[-1]), 0.0)


def age_quantile(probs: np.ndarray, q: float, age_map: AgeMap | None = None) -> np.ndarray:
    """Age below which a share ``q`` of the mass lies, carried through ``age_map`` (a monotone map keeps a quantile
    the same quantile; never below 0); the mass of year a is spread over [a - 0.5, a + 0.5), the same convention as
    the expected value (a distribution all on year 30 has mean 30 and 80% interval 29.6-30.4)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / np.maximum(probs.sum(axis=-1, keepdims=True), 1e-12)
    cdf = np.cumsum(probs, axis=-1)
    index = np.minimum((cdf < q).sum(axis=-1), probs.shape[-1] - 1)
    previous = np.take_along_axis(cdf, np.maximum(index - 1, 0)[..., None], -1)[..., 0]
    below = np.where(index > 0, previous, 0.0)
    mass = np.take_along_axis(probs, index[..., None], -1)[..., 0]
    fraction = np.clip((q - below) / np.maximum(mass, 1e-12), 0.0, 1.0)
    quantile = np.maximum(index + fraction - 0.5, 0.0)
    return quantile if age_map is None else np.maximum(age_map.forward(quantile), 0.0)


def age_interval(probs: np.ndarray, coverage: float = 0.8,
                 age_map: AgeMap | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The central ``coverage`` interval of the distribution carried through ``age_map`` (never below 0)."""
    tail = (1.0 - coverage) / 2
    return age_quantile(probs, tail, age_map), age_quantile(probs, 1.0 - tail, age_map)


@dataclass(frozen=True)
class Estimates:
    """What a model's output means, face by face: age (years), its 80% interval, and a probability per bin."""

    ages: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    bin_probs: np.ndarray


def head_estimates(probs: np.ndarray, bins: AgeBins, *, predicts_ages: bool, bin_ages=(),
                   age_map: AgeMap | None = None) -> Estimates:  # fmt: skip
    """The one place either head kind becomes ages: an "ages" head's distribution (carried through ``age_map``) gives
    its expected value, the 10th-90th percentile interval and the mass in each of ``bins``; a "bins" head's
    probabilities give the probability-weighted ``bin_ages`` and the most probable bin as the interval."""
    if predicts_ages:
        lows, highs = age_interval(probs, 0.8, age_map)
        return Estimates(expected_age(probs, age_map), lows, highs, bins.probabilities(probs, age_map=age_map))
    best = probs.argmax(axis=1)
    edges = list(bins.lower_edges) + [116]
    return Estimates(probs @ np.asarray(bin_ages, dtype=float), np.array([edges[i] for i in best], dtype=float),
                     np.array([edges[i + 1] - 1 for i in best], dtype=float), probs)  # fmt: skip
