"""Face detection (MTCNN on ONNX Runtime) and alignment to a fixed 5-point template."""

from faceage.detect.align import (
    ALIGNMENT_VERSION,
    DEFAULT_CROP_SIZE,
    SAME_ALIGNMENT,
    AlignedFace,
    align_face,
    template_points,
)
from faceage.detect.mtcnn import MTCNN, Detection, DetectorConfig


def main_face(detections: list[Detection], width: int, height: int) -> Detection | None:
    """The face a single-subject photo is about: the largest box, discounted by its distance from the centre.

    The weight falls linearly from 1 at the image centre to 0.5 at a corner, so a slightly smaller face in the
    middle wins over a large one cut by the edge. Returns None when there is no detection.
    """
    if not detections:
        return None
    cx, cy, half_diagonal = width / 2, height / 2, ((width / 2) ** 2 + (height / 2) ** 2) ** 0.5

    def weight(d: Detection) -> float:
        fx, fy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
        off_centre = ((fx - cx) ** 2 + (fy - cy) ** 2) ** 0.5 / half_diagonal
        return d.area * (1.0 - 0.5 * min(off_centre, 1.0))

    return max(detections, key=weight)


__all__ = [
    "ALIGNMENT_VERSION",
    "SAME_ALIGNMENT",
    "DEFAULT_CROP_SIZE",
    "MTCNN",
    "AlignedFace",
    "Detection",
    "DetectorConfig",
    "align_face",
    "main_face",
    "template_points",
]
