import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceage.bins import AgeBins
from faceage.distribution import AgeMap
from faceage.errors import BinsError


def test_default_bins_are_the_studys_five_classes():
    bins = AgeBins.default()
    assert bins.labels == ["0-20", "21-26", "27-35", "36-50", "51+"]
    assert str(bins) == "0-20,21-26,27-35,36-50,51+"


@pytest.mark.parametrize(
    ("age", "label"),
    [(0, "0-20"), (20, "0-20"), (21, "21-26"), (26, "21-26"), (27, "27-35"), (35, "27-35"), (36, "36-50"),
     (50, "36-50"), (51, "51+"), (116, "51+"), (20.9, "0-20")],
)  # fmt: skip
def test_every_boundary(age, label):
    assert AgeBins.default().label(age) == label


def test_index_on_arrays():
    np.testing.assert_array_equal(AgeBins.default().index(np.array([0, 21, 35, 36, 90])), [0, 1, 2, 3, 4])


def test_custom_bins_parse_with_spaces():
    assert AgeBins.parse(" 0-12, 13-17 ,18-24,25+ ").labels == ["0-12", "13-17", "18-24", "25+"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0-20,22-30,31+", "gap"),
        ("0-20,20-30,31+", "overlap"),
        ("0-20,31+,21-30", "last"),
        ("5-20,21+", "start at 0"),
        ("0-20,21-30", "open-ended"),
        ("0-20,abc,21+", "cannot read"),
        ("0-20,,21+", "empty"),
        ("0-20,30-25,31+", "ends before"),
        ("0+", "at least two"),
        ("quantile:5", "training split"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(BinsError, match=message):
        AgeBins.parse(spec)


def test_quantile_bins_from_training_ages():
    ages = np.repeat(np.arange(10, 60), 10)  # uniform 10..59
    bins = AgeBins.parse("quantile:5", train_ages=ages)
    assert len(bins) == 5
    counts = np.bincount(bins.index(ages), minlength=5)
    assert counts.min() >= 90 and counts.max() <= 110


def test_negative_age_is_refused():
    with pytest.raises(BinsError, match="non-negative"):
        AgeBins.default().index(-1)


def test_bin_probabilities_from_distribution():
    bins = AgeBins.default()
    probs = np.zeros(101)
    probs[[20, 21]] = 0.5
    out = bins.probabilities(probs)
    np.testing.assert_allclose(out, [0.5, 0.5, 0, 0, 0])
    assert bins.probabilities(np.full(101, 1 / 101)).sum() == pytest.approx(1.0)
    probs = np.zeros(101)
    probs[30:36] = 0.1
    probs[60] = 0.4
    assert int(np.argmax(bins.probabilities(probs))) == 2  # 0.6 in 27-35 beats 0.4 in 51+


@given(st.lists(st.integers(min_value=1, max_value=110), min_size=1, max_size=8, unique=True))
def test_any_increasing_edges_round_trip(uppers):
    edges = [0] + sorted(uppers)
    bins = AgeBins(tuple(edges))
    assert AgeBins.parse(bins.spec) == bins
    for age in range(0, 117):
        lo = edges[bins.index(age)]
        assert lo <= age


def test_bin_probabilities_of_a_moved_distribution_split_each_year_in_proportion():
    bins = AgeBins.default()
    year = np.zeros(101)
    year[21] = 1.0  # spread over [20.5, 21.5): first year of 21-26
    np.testing.assert_allclose(bins.probabilities(year, age_map=AgeMap.shift(-0.25)), [0.25, 0.75, 0, 0, 0])
    np.testing.assert_allclose(bins.probabilities(year, age_map=AgeMap.shift(0.25)), [0, 1, 0, 0, 0])
    np.testing.assert_allclose(bins.probabilities(year, age_map=AgeMap.shift(-1.0)), [1, 0, 0, 0, 0])
    ends = np.zeros((2, 101))
    ends[0, 0] = ends[1, 100] = 1.0  # moved past 0 or past 100: still in the first or last bin
    np.testing.assert_allclose(bins.probabilities(ends, age_map=AgeMap.shift(-0.6)), [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    np.testing.assert_allclose(bins.probabilities(ends, age_map=AgeMap.shift(0.6)), [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(101), size=20)
    np.testing.assert_allclose(bins.probabilities(probs, age_map=AgeMap.shift(-0.57)).sum(axis=1), 1.0)
    tiny = AgeMap.shift(1e-12)
    np.testing.assert_allclose(bins.probabilities(probs, age_map=tiny), bins.probabilities(probs), atol=1e-9)
    assert bins.probabilities(np.zeros((0, 101)), age_map=AgeMap.shift(-0.5)).shape == (0, 5)  # a photo without faces
    with pytest.raises(BinsError, match="whole years"):
        bins.probabilities(probs[:, :5], ages=np.array([0, 10, 20, 30, 40]), age_map=AgeMap.shift(1.0))
