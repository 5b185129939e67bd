import numpy as np
import pytest

from faceage.bins import AgeBins
from faceage.distribution import AgeMap, age_interval, age_quantile, expected_age
from faceage.errors import FaceageError


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
    ages = expected_age(probs, age_map=AgeMap.shift(-0.5))
    np.testing.assert_allclose(ages, [29.5, 0.0])
    low, high = age_interval(probs, 0.8, age_map=AgeMap.shift(-0.5))
    np.testing.assert_allclose(low, [29.1, 0.0])
    np.testing.assert_allclose(high, [29.9, 0.0])


def test_an_age_map_carries_the_whole_distribution_so_estimate_interval_and_bins_agree():
    bins = AgeBins.default()
    stretch = AgeMap((0.0, 20.0, 50.0, 100.0), (0.0, 18.0, 56.0, 110.0))  # the ends pulled apart
    np.testing.assert_allclose(stretch.inverse(stretch.forward([-3.0, 0.0, 7.5, 20.0, 35.0, 99.0, 120.0])),
                               [-3.0, 0.0, 7.5, 20.0, 35.0, 99.0, 120.0])  # fmt: skip
    np.testing.assert_allclose(stretch.forward([-1.0, 120.0]), [-1.0, 130.0])  # slope 1 beyond the knots
    year = np.zeros((1, 101))
    year[0, 40] = 1.0  # [39.5, 40.5) maps to [42.7, 44.0): wholly in 36-50, mean 18 + 20 * 38 / 30
    assert expected_age(year, stretch)[0] == pytest.approx(18 + 20 * 38 / 30, abs=1e-9)
    np.testing.assert_allclose(bins.probabilities(year, age_map=stretch), [[0, 0, 0, 1, 0]])
    low, high = age_interval(year, 0.8, stretch)
    np.testing.assert_allclose([low[0], high[0]], stretch.forward([39.6, 40.4]))
    year[0, 40], year[0, 50] = 0.0, 1.0  # across the knot at 50: the mean of the two slopes' halves
    assert expected_age(year, stretch)[0] == pytest.approx(56 + 0.25 * (54 / 50 - 38 / 30) / 2, abs=1e-9)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.full(101, 0.3), size=50)
    mapped = bins.probabilities(probs, age_map=stretch)
    np.testing.assert_allclose(mapped.sum(axis=1), 1.0)
    # a bin's share is the mass whose mapped age lies in it: the same as the mapped median's bin at half mass
    median = stretch.forward(age_quantile(probs, 0.5))
    below = np.cumsum(mapped, axis=1)
    for i, age in enumerate(median):
        b = bins.index(np.array([int(np.floor(age + 0.5))]))[0]
        assert (below[i, b - 1] if b else 0.0) <= 0.5 + 1e-9 and 0.5 <= below[i, b] + 1e-9
    # an offset is the map that moves every age by the same years
    np.testing.assert_allclose(expected_age(probs, AgeMap.shift(-0.5)), np.maximum(expected_age(probs) - 0.5, 0))


def test_an_age_map_must_be_strictly_increasing():
    with pytest.raises(FaceageError, match="strictly increasing"):
        AgeMap((0.0, 50.0, 100.0), (0.0, 50.0, 50.0))
    with pytest.raises(FaceageError, match="two or more"):
        AgeMap((1.0,), (2.0,))
    with pytest.raises(FaceageError, match="finite"):
        AgeMap((0.0, np.nan), (0.0, 1.0))
