"""Every evaluation metric against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceage.evaluate.fairness import fairness_audit, group_rows, spread
from faceage.metrics import (
    age_errors,
    band_errors,
    bin_agreement,
    bootstrap_interval,
    challenge_curve,
    challenge_rates,
    interval_agreement,
)


def test_age_errors_by_hand():
    truth = np.array([10, 20, 30, 40])
    estimate = np.array([12, 20, 24, 47])  # errors +2, 0, -6, +7
    result = age_errors(truth, estimate)
    assert result["n"] == 4
    assert result["mae"] == pytest.approx(15 / 4)
    assert result["median_ae"] == pytest.approx(4.0)  # |errors| sorted 0, 2, 6, 7
    assert result["cs5"] == pytest.approx(0.5)  # 0 and 2 are within 5
    assert result["mean_signed"] == pytest.approx(3 / 4)


def test_age_errors_empty():
    assert age_errors(np.array([]), np.array([]))["mae"] is None


def test_interval_agreement_by_hand():
    truth = np.array([10, 20, 30, 40, 50])
    low, high = np.array([8, 21, 30, 35, 40]), np.array([12, 25, 30, 39, 60])  # in, below, edge (in), above, in
    result = interval_agreement(truth, low, high)
    assert result["interval_coverage"] == pytest.approx(3 / 5)
    assert result["interval_below"] == pytest.approx(1 / 5) and result["interval_above"] == pytest.approx(1 / 5)
    assert result["interval_width"] == pytest.approx((4 + 4 + 0 + 4 + 20) / 5)
    assert interval_agreement(np.array([]), np.array([]), np.array([]))["interval_coverage"] is None


def test_bin_agreement_accuracy_adjacent_and_confusion():
    true = np.array([0, 0, 1, 2, 4])
    pred = np.array([0, 1, 1, 4, 4])
    result = bin_agreement(true, pred, 5)
    assert result["acc"] == pytest.approx(3 / 5)
    assert result["adjacent_acc"] == pytest.approx(4 / 5)  # only 2 → 4 is two bins off
    confusion = np.array(result["confusion"])
    assert confusion.sum() == 5
    assert confusion[0, 0] == 1 and confusion[0, 1] == 1 and confusion[2, 4] == 1 and confusion[4, 4] == 1


def test_single_class_is_fine():
    result = bin_agreement(np.array([3, 3, 3]), np.array([3, 3, 2]), 5)
    assert result["acc"] == pytest.approx(2 / 3)
    assert np.array(result["confusion"])[3].tolist() == [0, 0, 1, 2, 0]


def test_band_errors_by_hand():
    rows = {r["band"]: r for r in band_errors(np.array([5, 15, 70, 80]), np.array([7, 19, 60, 76]))}
    assert rows["0-12"] == {"band": "0-12", "n": 1, "mae": 2.0, "bias": 2.0}
    assert rows["13-17"]["bias"] == 4.0
    assert rows["60+"]["mae"] == 7.0 and rows["60+"]["bias"] == -7.0
    assert rows["25-39"]["n"] == 0 and rows["25-39"]["mae"] is None


def test_challenge_rates_by_hand():
    truth = np.array([14, 16, 17, 12, 30, 40, 20])
    estimate = np.array([26, 20, 17, 11, 23, 45, 19])
    rates = challenge_rates(truth, estimate, 25)
    assert rates["minors_13_17_passed"] == pytest.approx(1 / 3)  # only the 14-year-old looks 26
    assert rates["under_18_passed"] == pytest.approx(1 / 4)
    assert rates["adults_25_referred"] == pytest.approx(1 / 2)  # the 30-year-old looks 23
    assert rates["adults_18_referred"] == pytest.approx(2 / 3)  # and the 20-year-old looks 19
    at18 = challenge_rates(truth, estimate, 18)
    assert at18["under_18_passed"] == pytest.approx(2 / 4)  # 26 and 20 are ≥ 18
    curve = challenge_curve(truth, estimate)
    assert [c["challenge"] for c in curve] == list(range(18, 36))
    passed = [c["under_18_passed"] for c in curve]
    assert passed == sorted(passed, reverse=True)  # a higher challenge age never lets more minors through


def test_challenge_rates_without_minors_are_none():
    assert challenge_rates(np.array([30, 40]), np.array([30, 40]), 25)["under_18_passed"] is None


def test_bootstrap_is_deterministic_with_a_seed_and_brackets_the_mean():
    values = np.arange(100, dtype=float)
    first = bootstrap_interval(np.mean, values, n_resamples=500, seed=7)
    assert first == bootstrap_interval(np.mean, values, n_resamples=500, seed=7)
    assert first != bootstrap_interval(np.mean, values, n_resamples=500, seed=8)
    assert first[0] < values.mean() < first[1]
    assert bootstrap_interval(np.mean, np.array([]), seed=0) == (None, None)
    assert bootstrap_interval(np.mean, np.array([3.0]), seed=0) == (3.0, 3.0)


def _frame():
    return pd.DataFrame(
        {
            "gender": [0, 0, 1, 1, 1, np.nan],
            "race": [0, 1, 0, 1, 1, 2],
            "correct": [True, False, True, True, False, True],
            "abs_error": [1.0, 3.0, 2.0, 4.0, 6.0, 9.0],
        }
    )


def test_group_rows_by_hand_and_missing_labels_skipped():
    rows = {r["group"]: r for r in group_rows(_frame(), ["gender"], n_resamples=200, seed=0)}
    assert set(rows) == {"male", "female"}  # the row without a gender label is left out
    assert rows["male"]["n"] == 2 and rows["male"]["acc"] == pytest.approx(0.5) and rows["male"]["mae"] == 2.0
    assert rows["female"]["acc"] == pytest.approx(2 / 3) and rows["female"]["mae"] == pytest.approx(4.0)
    assert rows["female"]["mae_low"] <= 4.0 <= rows["female"]["mae_high"]
    crossed = {r["group"] for r in group_rows(_frame(), ["gender", "race"], n_resamples=50)}
    assert crossed == {"male / White", "male / Black", "female / White", "female / Black"}


def test_spread_needs_two_large_enough_groups():
    rows = [{"group": "a", "n": 40, "mae": 3.0}, {"group": "b", "n": 50, "mae": 5.5}, {"group": "c", "n": 3, "mae": 9}]
    result = spread(rows, "mae", min_n=30)
    assert result["spread"] == pytest.approx(2.5) and result["lowest"] == "a" and result["highest"] == "b"
    assert spread(rows, "mae", min_n=45) is None


def test_audit_skips_groupings_without_labels():
    frame = _frame().drop(columns=["race"])
    assert set(fairness_audit(frame, n_resamples=20)) == {"gender"}
    empty = _frame().assign(gender=np.nan, race=np.nan)
    assert fairness_audit(empty, n_resamples=20) == {}


def test_every_age_falls_in_exactly_one_band():
    from faceage.metrics import age_bands, in_band

    ages = np.array([0, 12, 12.9995, 13, 17.5, 24.99, 25, 59.999, 60, 116])
    counts = sum(mask.astype(int) for _, _, mask in age_bands(ages))
    assert (counts == 1).all()
    assert in_band(12.9995, 0, 12) and in_band(17.5, 13, 17) and not in_band(18, 13, 17) and in_band(116, 60, None)
