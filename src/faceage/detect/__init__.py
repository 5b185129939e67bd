"""Face detection (MTCNN on ONNX Runtime), alignment to a fixed 5-point template, and which face a judgement is
about (:func:`select_face`, the one rule for prepare, the estimator, evaluation and the checks)."""

from typing import TypeVar

from faceage.detect.align import (
    ALIGNMENT_VERSION,
    DEFAULT_CROP_SIZE,
    SAME_ALIGNMENT,
    AlignedFace,
    align_face,
    template_points,
)
from faceage.detect.mtcnn import MTCNN, Detection, DetectorConfig

F = TypeVar("F")  # a Detection, or a Face (anything with box and area)


FACE_RULES = ("largest", "main")


def largest_first(faces: list[F]) -> list[F]:
    """Detections (or faces with ages) by box area, largest first: the order of predict's rows and the API."""
    return sorted(faces, key=lambda face: -face.area)


def select_face(faces: list[F], rule: str = "largest", image_size: tuple[int, int] | None = None) -> F | None:
    """The one face a judgement is about, or None without any: ``largest`` (the largest box; the estimator, evaluation
    of photos, the checks) or ``main`` (the face a single-subject photo is about, for preparing training data: the
    largest box discounted by its distance from the centre of the image of ``image_size`` (width, height), the weight
    falling linearly from 1 at the centre to 0.5 at a corner, so that a slightly smaller face in the middle wins over
    a large one cut by the edge)."""
    if rule not in FACE_RULES:
        raise ValueError(f"rule must be one of {FACE_RULES}, not {rule!r}")
    if not faces:
        return None
    if rule == "largest":
        return largest_first(faces)[0]
    if image_size is None:
        raise ValueError("the 'main' face needs the image size (width, height)")
    width, height = image_size
    cx, cy, half_diagonal = width / 2, height / 2, ((width / 2) ** 2 + (height / 2) ** 2) ** 0.5

    def weight(face) -> float:
        fx, fy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        off_centre = ((fx - cx) ** 2 + (fy - cy) ** 2) ** 0.5 / half_diagonal
        return face.area * (1.0 - 0.5 * min(off_centre, 1.0))

    return max(faces, key=weight)


__all__ = [
    "ALIGNMENT_VERSION",
    "SAME_ALIGNMENT",
    "DEFAULT_CROP_SIZE",
    "MTCNN",
    "AlignedFace",
    "Detection",
    "DetectorConfig",
    "align_face",
    "FACE_RULES",
    "largest_first",
    "select_face",
    "template_points",
]
