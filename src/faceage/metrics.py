"""Age-estimation metrics on arrays (numpy only), shared by training summaries and evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# NIST FATE AEV-style age bands
AGE_BANDS = ((0, 12), (13, 17), (18, 24), (25, 39), (40, 59), (60, None))


def band_label(low: int, high: int | None) -> str:
    return f"{low}+" if high is None else f"{low}-{high}"


def in_band(ages, low: int, high: int | None) -> np.ndarray:
    """Which ``ages`` fall in the band ``low``-``high`` (years, both included; ``high`` None: open): ``low <= age <
    high + 1``, so that 17.5 is 13-17 and no age falls between two bands."""
    ages = np.asarray(ages, dtype=float)
    return (ages >= low) & (ages < (np.inf if high is None else high + 1))


def age_bands(ages) -> Iterator[tuple[int, int | None, np.ndarray]]:
    """(low, high, mask) for each of :data:`AGE_BANDS` over ``ages``: the one band loop of metrics and checks."""
    for low, high in AGE_BANDS:
        yield low, high, in_band(ages, low, high)


def band_errors(truth: np.ndarray, estimate: np.ndarray) -> list[dict]:
    """Per age band of the true age: n, MAE and signed bias (estimate - truth; positive = aged up)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    rows = []
    for low, high, mask in age_bands(truth):
        error = estimate[mask] - truth[mask]
        rows.append(
            {
                "band": band_label(low, high),
                "n": int(mask.sum()),
                "mae": round(float(np.abs(error).mean()), 3) if mask.any() else None,
                "bias": round(float(error.mean()), 3) if mask.any() else None,
            }
        )
    return rows


def age_errors(truth: np.ndarray, estimate: np.ndarray) -> dict:
    """MAE, median absolute error, CS@5 (share within ±5 years) and mean signed error (positive = aged up)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    if truth.size == 0:
        return {"n": 0, "mae": None, "median_ae": None, "cs5": None, "mean_signed": None}
    error = estimate - truth
    return {
        "n": int(truth.size),
        "mae": float(np.abs(error).mean()),
        "median_ae": float(np.median(np.abs(error))),
        "cs5": float((np.abs(error) <= 5).mean()),
        "mean_signed": float(error.mean()),
    }


def interval_agreement(truth: np.ndarray, low: np.ndarray, high: np.ndarray) -> dict:
    """How often the stated interval holds the true age (coverage; an 80% interval should hold it for about 80%),
    how often the truth lies below or above it, and the interval's mean width in years."""
    truth, low, high = (np.asarray(v, dtype=float) for v in (truth, low, high))
    if truth.size == 0:
        return {"interval_coverage": None, "interval_below": None, "interval_above": None, "interval_width": None}
    return {
        "interval_coverage": float(((truth >= low) & (truth <= high)).mean()),
        "interval_below": float((truth < low).mean()),
        "interval_above": float((truth > high).mean()),
        "interval_width": float((high - low).mean()),
    }


def bin_agreement(true_bins: np.ndarray, predicted_bins: np.ndarray, n_bins: int) -> dict:
    """Exact and ±1-bin accuracy and the confusion matrix (rows: true bin, columns: predicted bin)."""
    true_bins, predicted_bins = np.asarray(true_bins, dtype=int), np.asarray(predicted_bins, dtype=int)
    confusion = np.zeros((n_bins, n_bins), dtype=int)
    np.add.at(confusion, (true_bins, predicted_bins), 1)
    if true_bins.size == 0:
        return {"acc": None, "adjacent_acc": None, "confusion": confusion.tolist()}
    return {
        "acc": float((true_bins == predicted_bins).mean()),
        "adjacent_acc": float((np.abs(true_bins - predicted_bins) <= 1).mean()),
        "confusion": confusion.tolist(),
    }


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if mask.size else None


def challenge_rates(truth: np.ndarray, estimate: np.ndarray, challenge: float) -> dict:
    """Screening rates when everyone estimated under ``challenge`` years is asked for ID (retail "Challenge N").

    ``minors_13_17_passed``: share of 13-17 year olds estimated at or above N (not asked, although minors);
    ``under_18_passed``: the same over all under-18s; ``adults_25_referred``: share of people aged 25 or more
    estimated under N (asked for ID needlessly); ``adults_18_referred``: the same for all adults (18+)."""
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    passed = estimate >= challenge
    teen = (truth >= 13) & (truth < 18)
    return {
        "challenge": challenge,
        "minors_13_17_passed": _share(passed[teen]),
        "under_18_passed": _share(passed[truth < 18]),
        "adults_18_referred": _share(~passed[truth >= 18]),
        "adults_25_referred": _share(~passed[truth >= 25]),
        "n_13_17": int(teen.sum()),
        "n_under_18": int((truth < 18).sum()),
        "n_18_plus": int((truth >= 18).sum()),
        "n_25_plus": int((truth >= 25).sum()),
    }


def challenge_curve(truth: np.ndarray, estimate: np.ndarray, challenges=range(18, 36)) -> list[dict]:
    return [challenge_rates(truth, estimate, n) for n in challenges]


def bootstrap_interval(
    statistic, *arrays: np.ndarray, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float] | tuple[None, None]:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows with replacement (seeded: the same
    seed gives the same interval). Empty input gives (None, None); a single row gives a zero-width interval."""
    arrays = tuple(np.asarray(a) for a in arrays)
    n = len(arrays[0]) if arrays else 0
    if n == 0:
        return None, None
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(n_resamples, n))
    values = np.array([statistic(*(a[i] for a in arrays)) for i in index], dtype=float)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
