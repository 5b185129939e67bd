"""From a probability distribution over ages to an age, an interval and bin probabilities (numpy only).

The age models predict a distribution over whole years 0, 1, …, 100 (100 meaning "100 or more"). The age estimate is
its expected value; the interval runs between two quantiles of it (80%: the 10th and 90th percentiles, linearly
interpolated inside a year); bin probabilities are the mass inside each bin. A model may carry an age offset
(``faceage.train.offset``): the distribution is then moved by it first, estimate and interval alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from faceage.bins import AgeBins

MAX_AGE_CLASS = 100
AGES = np.arange(MAX_AGE_CLASS + 1, dtype=np.float64)


def expected_age(probs: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """The distribution's mean, plus ``offset`` years (a model's measured correction, never below 0)."""
    probs = np.asarray(probs, dtype=np.float64)
    return np.maximum(probs @ AGES[: probs.shape[-1]] + offset, 0.0)


def age_quantile(probs: np.ndarray, q: float) -> np.ndarray:
    """Age below which a share ``q`` of the mass lies; the mass of year a is spread over [a - 0.5, a + 0.5), the same
    convention as the expected value (a distribution all on year 30 has mean 30 and 80% interval 29.6-30.4)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / np.maximum(probs.sum(axis=-1, keepdims=True), 1e-12)
    cdf = np.cumsum(probs, axis=-1)
    index = np.minimum((cdf < q).sum(axis=-1), probs.shape[-1] - 1)
    previous = np.take_along_axis(cdf, np.maximum(index - 1, 0)[..., None], -1)[..., 0]
    below = np.where(index > 0, previous, 0.0)
    mass = np.take_along_axis(probs, index[..., None], -1)[..., 0]
    fraction = np.clip((q - below) / np.maximum(mass, 1e-12), 0.0, 1.0)
    return np.maximum(index + fraction - 0.5, 0.0)


def age_interval(probs: np.ndarray, coverage: float = 0.8, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The central ``coverage`` interval of the distribution moved by ``offset`` years (never below 0)."""
    tail = (1.0 - coverage) / 2
    return tuple(np.maximum(age_quantile(probs, q) + offset, 0.0) for q in (tail, 1.0 - tail))


@dataclass(frozen=True)
class Estimates:
    """What a model's output means, face by face: age (years), its 80% interval, and a probability per bin."""

    ages: np.ndarray
    lows: np.ndarray
    highs: np.ndarray
    bin_probs: np.ndarray


def head_estimates(probs: np.ndarray, bins: AgeBins, *, predicts_ages: bool, bin_ages=(),
                   offset: float = 0.0) -> Estimates:  # fmt: skip
    """The one place either head kind becomes ages: an "ages" head's distribution (moved by ``offset``) gives its
    expected value, the 10th-90th percentile interval and the mass in each of ``bins``; a "bins" head's
    probabilities give the probability-weighted ``bin_ages`` and the most probable bin as the interval."""
    if predicts_ages:
        lows, highs = age_interval(probs, 0.8, offset)
        return Estimates(expected_age(probs, offset), lows, highs, bins.probabilities(probs, offset=offset))
    best = probs.argmax(axis=1)
    edges = list(bins.lower_edges) + [116]
    return Estimates(probs @ np.asarray(bin_ages, dtype=float), np.array([edges[i] for i in best], dtype=float),
                     np.array([edges[i + 1] - 1 for i in best], dtype=float), probs)  # fmt: skip
