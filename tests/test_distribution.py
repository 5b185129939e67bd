import numpy as np
import pytest

from faceage.bins import AgeBins
from faceage.distribution import age_interval, age_quantile, expected_age


def test_point_mass():
    probs = np.zeros(101)
    probs[30] = 1.0
    assert expected_age(probs) == pytest.approx(30.0)
    low, high = age_interval(probs, 0.8)
    assert low == pytest.approx(29.6) and high == pytest.approx(30.4)


def test_uniform_block_interval():
    probs = np.zeros(101)
    probs[20:40] = 0.05  # ages 20..39, each 5%
    assert expected_age(probs) == pytest.approx(29.5)
    low, high = age_interval(probs, 0.8)
    assert low == pytest.approx(21.5) and high == pytest.approx(37.5)
    assert age_quantile(probs, 0.5) == pytest.approx(29.5)


def test_batches_and_unnormalised_input():
    probs = np.zeros((2, 101))
    probs[0, 10] = 2.0
    probs[1, 50] = 1.0
    np.testing.assert_allclose(expected_age(probs / probs.sum(1, keepdims=True)), [10, 50])
    low, high = age_interval(probs)
    assert low.shape == (2,) and np.all(low < high)


def test_bin_probabilities_sum_to_one_and_pick_the_mass():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(101), size=50)
    bin_probs = AgeBins.default().probabilities(probs)
    np.testing.assert_allclose(bin_probs.sum(axis=1), 1.0)
    hand = np.zeros(101)
    hand[[25, 26, 27]] = [0.3, 0.3, 0.4]  # 0.6 in 21-26, 0.4 in 27-35
    assert AgeBins.default().labels[int(np.argmax(AgeBins.default().probabilities(hand)))] == "21-26"


def test_an_offset_moves_the_estimate_and_the_interval_but_never_below_zero():
    probs = np.zeros((2, 101))
    probs[0, 30] = probs[1, 0] = 1.0
    ages = expected_age(probs, offset=-0.5)
    np.testing.assert_allclose(ages, [29.5, 0.0])
    low, high = age_interval(probs, 0.8, offset=-0.5)
    np.testing.assert_allclose(low, [29.1, 0.0])
    np.testing.assert_allclose(high, [29.9, 0.0])
