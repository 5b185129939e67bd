import pytest
from hypothesis import given
from hypothesis import strategies as st

from faceage.data.utkface import BadName, parse_name

MALFORMED = {
    "24_0_1_20170116220224657 .jpg.chip.jpg": "white space",
    "55_0_0_20170116232725357jpg.chip.jpg": "misses the dot",
    "39_1_20170116174525125.jpg.chip.jpg": "3 fields",
    "61_1_20170109142408075.jpg.chip.jpg": "3 fields",
    "61_1_20170109150557335.jpg.chip.jpg": "3 fields",
}


def test_valid_chip_name():
    labels = parse_name("UTKFace/26_1_2_20170116174525125.jpg.chip.jpg")
    assert (labels.age, labels.gender, labels.race, labels.datetime, labels.chip) == (
        26, 1, 2, "20170116174525125", True,
    )  # fmt: skip


def test_valid_in_the_wild_name():
    labels = parse_name("part1/100_0_0_20170112213500903.jpg")
    assert labels.age == 100 and not labels.chip


def test_real_release_datetimes_of_16_and_18_digits_are_accepted():
    assert parse_name("14_0_0_2017011022340900.jpg.chip.jpg").age == 14
    assert parse_name("28_1_2_201701161846515488.jpg.chip.jpg").race == 2


@pytest.mark.parametrize(("name", "reason"), MALFORMED.items())
def test_each_malformed_release_name_is_refused_with_its_reason(name, reason):
    with pytest.raises(BadName, match=reason):
        parse_name(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("117_0_0_20170116174525125.jpg.chip.jpg", "maximum"),
        ("30_2_0_20170116174525125.jpg.chip.jpg", "gender"),
        ("30_0_5_20170116174525125.jpg.chip.jpg", "race"),
        ("x_0_0_20170116174525125.jpg.chip.jpg", "age"),
        ("30_0_0_2017.jpg.chip.jpg", "time stamp"),
        ("30_0_0_20170116174525125.png", "does not end"),
        ("README.md", "does not end"),
    ],
)
def test_other_bad_names(name, reason):
    with pytest.raises(BadName, match=reason):
        parse_name(name)


@given(st.text(max_size=60))
def test_garbage_never_crashes_and_never_invents_labels(text):
    try:
        labels = parse_name(text)
    except BadName:
        return
    assert 0 <= labels.age <= 116 and labels.gender in (0, 1) and labels.race in range(5)


@given(
    st.integers(0, 116), st.integers(0, 1), st.integers(0, 4), st.from_regex(r"\d{17}", fullmatch=True),
    st.booleans(),
)  # fmt: skip
def test_round_trip(age, gender, race, stamp, chip):
    name = f"{age}_{gender}_{race}_{stamp}.jpg" + (".chip.jpg" if chip else "")
    labels = parse_name(name)
    assert (labels.age, labels.gender, labels.race, labels.datetime, labels.chip) == (age, gender, race, stamp, chip)
