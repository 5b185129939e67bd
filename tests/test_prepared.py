"""PreparedData: a prepared folder opened once, its splits (with their no-face images), crops and originals."""

import pytest

from faceage.data.prepared import PreparedData
from faceage.errors import FaceageError


def test_splits_cover_every_usable_face_and_every_no_face_image_once(prepared_subset):
    data = PreparedData.open(prepared_subset)
    assert PreparedData.of(data) is data and str(data) == str(prepared_subset)
    usable = {name: data.split(name) for name in ("train", "val", "test")}
    assert sum(len(rows) for rows in usable.values()) == len(data.usable)
    with_no_face = {name: data.split(name, with_no_face=True) for name in ("train", "val", "test")}
    no_face = [rows[rows["status"] == "no_face"]["key"].tolist() for rows in with_no_face.values()]
    assert sorted(sum(no_face, [])) == sorted(data.manifest[data.manifest["status"] == "no_face"]["key"])
    assert len(data.bins) == 5 and abs(sum(data.fractions) - 1) < 1e-9
    crop = data.crop_path(usable["val"]["crop"].iloc[0])
    assert crop.startswith(str(prepared_subset)) and data.crop_path("") == "" and data.crop_path(None) == ""
    key = usable["val"]["key"].iloc[0]
    ((found, original),) = list(data.originals({key}))
    assert found == key and original[:2] == b"\xff\xd8"  # the JPEG itself
    with pytest.raises(FaceageError, match="unknown split"):
        data.split("holdout")


def test_a_folder_that_was_not_prepared_says_so(tmp_path):
    with pytest.raises(FaceageError, match="prepare the data first"):
        PreparedData.open(tmp_path)
