"""From a probability distribution over ages to an age, an interval and bin probabilities (numpy only).

The age models predict a distribution over whole years 0, 1, …, 100 (100 meaning "100 or more"). The age estimate is
its expected value; the interval runs between two quantiles of it (80%: the 10th and 90th percentiles, linearly
interpolated inside a year); bin probabilities are the mass inside each bin. A model may carry an age offset
(``faceage.train.offset``): the distribution is then moved by it first, estimate and interval alike.
"""

from __future__ import annotations

import numpy as np

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
