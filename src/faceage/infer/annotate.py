"""Drawing the estimates on a photo: a box per face with its age, 80% interval and bin."""

from __future__ import annotations

import cv2
import numpy as np

from faceage.infer.estimator import Face


def draw_faces(rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    scale = max(rgb.shape[:2]) / 800
    thickness = max(1, round(2 * scale))
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (40, 200, 40), thickness)
        label = f"{face.age:.0f} ({face.age_low:.0f}-{face.age_high:.0f})"
        font_scale = max(0.4, 0.6 * scale)
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(0, y1 - height - baseline - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + baseline + 4), (40, 200, 40), -1)
        cv2.putText(canvas, label, (x1 + 2, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thickness)  # fmt: skip
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
