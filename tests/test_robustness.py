"""The robustness table: perturbations of a real photo, and the table over a prepared split."""

import numpy as np
import pytest

from faceage.detect import MTCNN, align_face
from faceage.errors import FaceageError
from faceage.evaluate.robustness import PEER, PERTURBATIONS, EstimatorAges, PeerNetwork, perturbed_crops, robustness


@pytest.fixture(scope="module")
def face(astronaut):
    """The astronaut at twice her size: her eyes ~90 px apart, as in UTKFace's photos (~80 px)."""
    import cv2

    rgb = cv2.resize(astronaut, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    detection = max(MTCNN().detect(rgb), key=lambda d: d.area)
    landmarks = np.asarray(detection.landmarks, dtype=np.float64).reshape(5, 2)
    assert np.linalg.norm(landmarks[1] - landmarks[0]) > 60
    return rgb, landmarks


def test_every_perturbation_gives_an_aligned_crop_of_the_same_face(face):
    rgb, landmarks = face
    crops = perturbed_crops(rgb, landmarks, seed=3)
    assert list(crops) == list(PERTURBATIONS)
    assert all(crop.shape == (160, 160, 3) and crop.dtype == np.uint8 for crop in crops.values())
    assert np.array_equal(crops["clean"], align_face(rgb, landmarks).image)
    gray = crops["grayscale"].astype(int)
    assert np.abs(gray[..., 0] - gray[..., 1]).max() <= 1 and np.abs(gray[..., 1] - gray[..., 2]).max() <= 1
    clean = crops["clean"].astype(float)
    for name in PERTURBATIONS[1:]:
        changed = np.abs(crops[name].astype(float) - clean).mean()
        assert changed > 1.0, f"{name} left the face as it was ({changed:.2f} levels on average)"
        # still the same face in the same place: far closer to the clean crop than a mirrored one is
        assert changed < np.abs(clean[:, ::-1] - clean).mean() * 1.5, name
    # the smaller the eyes, the further from the clean crop
    distance = [np.abs(crops[f"eyes{e}"].astype(float) - clean).mean() for e in (48, 32, 24)]
    assert distance[0] < distance[1] < distance[2]


def test_perturbations_are_repeatable_and_seeded(face):
    rgb, landmarks = face
    first, again = perturbed_crops(rgb, landmarks, 5, ["grain"]), perturbed_crops(rgb, landmarks, 5, ["grain"])
    other = perturbed_crops(rgb, landmarks, 6, ["grain"])
    assert np.array_equal(first["grain"], again["grain"]) and not np.array_equal(first["grain"], other["grain"])


def test_a_face_already_smaller_than_the_eye_distance_is_left_as_it_is(face):
    rgb, landmarks = face
    small_eyes = (landmarks - landmarks.mean(0)) * 0.1 + landmarks.mean(0)  # eyes ~9 px apart
    crops = perturbed_crops(rgb, small_eyes, 0, ["clean", "eyes24"])
    assert np.array_equal(crops["clean"], crops["eyes24"])


def test_faces_are_aligned_at_the_size_asked_with_the_same_geometry(face):
    import cv2

    rgb, landmarks = face
    large = perturbed_crops(rgb, landmarks, 0, ["clean", "sepia"], size=220)
    assert all(crop.shape == (220, 220, 3) for crop in large.values())
    shrunk = cv2.resize(large["clean"], (160, 160), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(shrunk - perturbed_crops(rgb, landmarks, 0, ["clean"])["clean"]).mean() < 3


def test_an_unknown_perturbation_is_refused(face):
    with pytest.raises(FaceageError, match="no perturbation named 'fog'.*grayscale"):
        perturbed_crops(*face, 0, ["fog"])


def test_the_table_judges_every_model_and_the_peer_on_the_same_faces(prepared_subset, tiny_onnx):
    judges = [EstimatorAges("default", "default"), EstimatorAges("tiny", tiny_onnx), PeerNetwork(threads=1)]
    result = robustness(prepared_subset, judges, "test", limit=12, names=["clean", "jpeg20", "eyes24"])
    assert result.n == 12 and list(result.mae) == ["default", "tiny", PEER]
    assert all(list(row) == ["clean", "jpeg20", "eyes24"] for row in result.mae.values())
    assert all(0 < value < 60 for row in result.mae.values() for value in row.values())
    table = result.markdown().splitlines()
    assert table[0] == "| model | clean | jpeg20 | eyes24 |" and len(table) == 2 + 3
    assert set(result.behind_peer("tiny")) <= {"clean", "jpeg20", "eyes24"}
    with pytest.raises(FaceageError, match="no faces"):
        robustness(prepared_subset, judges, "test", limit=0)
