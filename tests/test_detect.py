import io
import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from faceage.detect import (
    ALIGNMENT_VERSION,
    MTCNN,
    SAME_ALIGNMENT,
    Detection,
    DetectorConfig,
    align_face,
    largest_first,
    select_face,
    template_points,
)
from faceage.detect.mtcnn import nms
from faceage.errors import FaceageError
from faceage.images import load_rgb

FIXTURE = Path(__file__).parent / "fixtures" / "mtcnn_reference.json"


@pytest.fixture(scope="module")
def detector() -> MTCNN:
    return MTCNN()


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize(("name", "count"), [("astronaut", 1), ("camera", 1), ("chelsea", 0)])
def test_scikit_image_photos(detector, name, count):
    assert len(detector.detect(load_rgb(getattr(data, name)()))) == count


def test_astronaut_box_is_on_her_face(detector, astronaut):
    (face,) = detector.detect(astronaut)
    assert iou(face.box, (182, 64, 265, 171)) > 0.9  # reference MTCNN's box
    left_eye, right_eye = face.landmarks[0], face.landmarks[1]
    assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 10


@pytest.mark.parametrize(
    ("photo", "count"),
    [
        ("multiface.jpg", 6),
        ("group-five.jpg", 5),
        ("portrait-angelina_jolie.jpg", 1),
        ("portrait-kate_siegel.jpg", 1),
        ("portrait-paul_rudd.jpg", 1),
        ("portrait-shea_whigham.jpg", 1),
    ],
)
def test_expected_faces_in_real_photos(detector, photos, photo, count):
    faces = detector.detect(load_rgb(photos / photo))
    assert len(faces) == count
    assert all(f.score >= 0.9 for f in faces)


def _reference_image(key: str, photos: Path, archive: Path) -> np.ndarray:
    source, name = key.split("/", 1)
    if source == "photos":
        return load_rgb(photos / name)
    if source == "skimage":
        return load_rgb(getattr(data, name)())
    with tarfile.open(archive) as tar:
        return load_rgb(io.BytesIO(tar.extractfile(name).read()).getvalue())


@pytest.mark.slow
def test_parity_with_reference_mtcnn(photos, archive):
    """Every face the reference implementation finds is found here with IoU >= 0.9 (same cascade thresholds)."""
    reference = json.loads(FIXTURE.read_text())
    thresholds = reference["meta"]["thresholds"]
    config = DetectorConfig(min_score=thresholds["threshold_onet"], min_face_fraction=0.0,
                            min_face_size=reference["meta"]["min_face_size"])  # fmt: skip
    detector = MTCNN(config)
    worst = 1.0
    for key, faces in reference["images"].items():
        ours = detector.detect(_reference_image(key, photos, archive))
        assert len(ours) == len(faces), key
        for face in faces:
            best = max((iou(face["box"], d.box) for d in ours), default=0.0)
            worst = min(worst, best)
            assert best >= 0.9, (key, face, best)
    assert worst >= 0.9


def test_alignment_puts_eyes_on_the_template(detector, photos):
    rgb = load_rgb(photos / "multiface.jpg")
    for face in detector.detect(rgb):
        for size in (112, 160):
            aligned = align_face(rgb, face.landmarks, size=size)
            assert aligned.image.shape == (size, size, 3)
            mapped = cv2.transform(np.array([face.landmarks]), aligned.matrix)[0]
            eyes_error = np.abs(mapped[:2] - template_points(size)[:2]).max()
            assert eyes_error < 0.04 * size  # a few pixels


def test_alignment_refuses_bad_landmarks(astronaut):
    with pytest.raises(FaceageError, match="5 finite"):
        align_face(astronaut, [(1, 2), (3, 4)])
    with pytest.raises(FaceageError, match="degenerate"):
        align_face(astronaut, [(5, 5)] * 5)


def test_similarity_matrix_is_scikit_images_least_squares_similarity(detector, photos):
    from skimage.transform import SimilarityTransform

    from faceage.detect.align import similarity_matrix

    rng = np.random.default_rng(0)
    cases = [np.asarray(face.landmarks, dtype=float) for face in detector.detect(load_rgb(photos / "multiface.jpg"))]
    cases += [rng.normal(0, 40, (5, 2)) + rng.normal(0, 300, 2) for _ in range(200)]  # any 5 points
    cases += [template_points(50) * [-1, 1] + 200]  # a mirror image: the best similarity cannot mirror it back
    cases += [np.column_stack([np.arange(5.0), 2 * np.arange(5.0)])]  # all on one line
    for points in cases:
        expected = SimilarityTransform.from_estimate(points, template_points(160)).params[:2]
        np.testing.assert_allclose(similarity_matrix(points, template_points(160)), expected, atol=1e-9)


def test_alignment_leaves_the_area_beyond_the_photo_black(astronaut):
    """What ALIGNMENT_VERSION names (…-black): a crop reaching past the photo's edge is black there, as in training."""
    landmarks = template_points(100) - 40  # a face whose crop would start 40 px above and left of the photo
    image = align_face(astronaut, landmarks, size=100).image
    assert not image[:30, :30].any()  # beyond the top-left corner: black, not mirrored or smeared
    assert image[60:, 60:].mean() > 10  # the photo itself
    assert ALIGNMENT_VERSION.endswith("-black") and ALIGNMENT_VERSION in SAME_ALIGNMENT


def test_the_main_face_is_large_and_central_the_largest_is_large():
    big_corner = Detection((0, 0, 50, 50), ((0, 0),) * 5, 0.99)
    central = Detection((80, 80, 124, 124), ((0, 0),) * 5, 0.95)
    tiny_centre = Detection((95, 95, 105, 105), ((0, 0),) * 5, 0.99)
    faces = [tiny_centre, central, big_corner]
    assert select_face(faces, "main", (200, 200)) is central
    assert select_face(faces, "largest") is big_corner and largest_first(faces) == [big_corner, central, tiny_centre]
    assert select_face([], "main", (200, 200)) is None and select_face([]) is None
    with pytest.raises(ValueError, match="image size"):
        select_face(faces, "main")


def test_nms_keeps_best_and_removes_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]


def test_smallest_face_is_a_setting_with_a_floor(photos):
    """The default skips faces too small for a good age; asking for 20 px finds the tiny face in the street photo."""
    street = load_rgb(photos / "group-street.jpg")
    default, small = MTCNN().detect(street), MTCNN(DetectorConfig(min_face_size=20)).detect(street)
    assert len(small) > len(default) >= 5
    assert min(d.width for d in small) < 20 < min(d.width for d in default)
    with pytest.raises(FaceageError, match="at least 12 px"):
        DetectorConfig(min_face_size=8)


def test_every_thread_count_finds_the_same_faces(photos):
    """Two threads (the default where two cores are free: the pyramid is resized beside P-Net) or one: the same
    boxes, landmarks and scores, bit for bit; a thread count that is not a whole number from 1 is refused."""
    one, two = MTCNN(DetectorConfig(threads=1)), MTCNN(DetectorConfig(threads=2))
    assert one._resizer is None and two._resizer is not None
    for name in ("multiface.jpg", "group-five.jpg", "portrait-paul_rudd.jpg"):
        rgb = load_rgb(photos / name)
        assert [f.to_dict() for f in one.detect(rgb)] == [f.to_dict() for f in two.detect(rgb)]
    for threads in (0, 1.5, True):
        with pytest.raises(FaceageError, match="threads must be a whole number"):
            MTCNN(DetectorConfig(threads=threads))


def test_the_default_thread_count_is_the_usable_cores_up_to_two():
    import os

    from faceage.machine import default_threads

    assert MTCNN().config.threads == default_threads() == min(2, len(os.sched_getaffinity(0)))


def test_the_detector_graphs_are_built_once_and_then_read_from_the_cache(tmp_path, monkeypatch):
    """The cached graphs are the bytes a build gives; a damaged one is built again; an unwritable cache only costs
    the build; from a warm cache the detector starts without importing onnx or joblib."""
    import os
    import subprocess
    import sys

    from faceage.detect import mtcnn, mtcnn_graphs

    monkeypatch.setenv("FACEAGE_CACHE_DIR", str(tmp_path / "cache"))
    built = {name: getattr(mtcnn_graphs, f"build_{name}")() for name in ("pnet", "rnet", "onet")}
    for name, graph in built.items():
        assert mtcnn.network_bytes(name) == graph  # built and stored
        assert mtcnn.network_bytes(name) == graph  # read back
    stored = sorted(p.name.split("-")[1] for p in (tmp_path / "cache").iterdir())
    assert stored == ["onet", "pnet", "rnet"]
    damaged = next((tmp_path / "cache").glob("mtcnn-pnet-*.onnx"))
    damaged.write_bytes(built["pnet"][:-1] + b"\x00")  # one byte changed: still a graph, not the one built
    assert mtcnn.network_bytes("pnet") == built["pnet"]
    assert [p.read_bytes() for p in (tmp_path / "cache").glob("mtcnn-pnet-*.onnx")] == [built["pnet"]]
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("FACEAGE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # cannot be made
    assert mtcnn.network_bytes("rnet") == built["rnet"]
    warm = ("import sys; from faceage.detect.mtcnn import MTCNN; MTCNN(); "
            "print(sorted({'onnx', 'joblib'} & set(sys.modules)))")  # fmt: skip
    env = {**os.environ, "FACEAGE_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", warm], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"
