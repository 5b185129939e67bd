"""Annotated copies of photos: the estimates (a box per face with its age and 80% interval) or the detections (box,
landmarks, score) drawn, the copies' names, and writing them; predict, demo and detect share it."""

from __future__ import annotations

from pathlib import Path

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


def draw_detections(rgb: np.ndarray, faces: list[dict]) -> np.ndarray:
    """Copy of ``rgb`` with a box, the landmarks and the score drawn for each detection (``Detection.to_dict``)."""
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(rgb.shape[:2]) / 400))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 200, 0), thickness)
        for x, y in face["landmarks"]:
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, (0, 0, 255), -1)
        label = f"{i}: {face['score']:.2f}"
        cv2.putText(canvas, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 200, 0),
                    thickness)  # fmt: skip
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def annotated_names(paths: list[str]) -> list[str]:
    """A distinct file name for each input's annotated copy: ``<stem>.annotated.jpg``, then ``<stem>-2...`` for the
    next input of the same stem (``a/photo.jpg``, ``b/photo.jpg`` and ``photo.png`` are three photos; a sample name
    such as ``astronaut`` keeps its name; standard input is ``stdin``)."""
    taken: set[str] = set()
    names = []
    for path in paths:
        stem = "stdin" if path == "-" else Path(path).stem
        name, n = f"{stem}.annotated.jpg", 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}.annotated.jpg"
        taken.add(name.lower())
        names.append(name)
    return names


def write_image(path: Path | str, rgb: np.ndarray) -> str:
    """Write an annotated copy (JPEG by its name); "" when written, else what went wrong."""
    try:
        if cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            return ""
        problem = ""
    except cv2.error as exc:
        problem = str(exc).strip().splitlines()[-1]
    return f"{path}: the annotated copy could not be written" + (f" ({problem})" if problem else "")
