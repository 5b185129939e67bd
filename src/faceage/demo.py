"""Face detection and ages on a few photos with annotated copies and a JSON: the ``demo`` and ``detect`` commands
(the drawing and naming of the copies is :mod:`faceage.infer.annotate`, shared with ``predict``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from faceage.detect import MTCNN, DetectorConfig, largest_first
from faceage.errors import FaceageError
from faceage.images import load_rgb
from faceage.infer.annotate import annotated_names, draw_detections, write_image

SAMPLE_NAMES = ("astronaut", "camera", "chelsea")


def sample_photos() -> dict[str, np.ndarray]:
    """Public-domain photos shipped inside scikit-image (no download): one face, one face, a cat."""
    from skimage import data

    return {name: load_rgb(getattr(data, name)(), name=name) for name in SAMPLE_NAMES}


def detect_and_annotate(images: dict[str, object], out: Path, min_score: float = 0.9) -> dict[str, dict]:
    """Detect faces in each image; write ``<name>.annotated.jpg`` and ``detections.json`` into ``out``.

    An unreadable image gets an ``error`` entry and the others go on.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    detector = MTCNN(DetectorConfig(min_score=min_score))
    results: dict[str, dict] = {}
    for (name, source), copy in zip(images.items(), annotated_names(list(images)), strict=True):
        try:
            rgb = load_rgb(source, name=name)
        except FaceageError as exc:
            results[name] = {"error": str(exc)}
            continue
        faces = [d.to_dict() for d in largest_first(detector.detect(rgb))]
        results[name] = {"width": int(rgb.shape[1]), "height": int(rgb.shape[0]), "faces": faces}
        write_image(out / copy, draw_detections(rgb, faces))
    (out / "detections.json").write_text(json.dumps(results, indent=1))
    return results


def demo_photos() -> dict[str, object]:
    """scikit-image's sample photos, plus the shared test photos beside the repository when they are there."""
    photos: dict[str, object] = dict(sample_photos())
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos"  # beside the repository
    if shared.is_dir():
        photos.update({p.name: p for p in sorted(shared.glob("*.jpg"))})
    return photos


def age_demo(images: dict[str, object], out: Path, model: Path | None = None) -> list[dict]:
    """Ages for every face: annotated copies, ``ages.csv`` (the predict columns) and ``detections.json``."""
    from faceage.infer import AgeEstimator
    from faceage.infer.predict import estimate_photo, write_rows

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    estimator = AgeEstimator(model=model)
    rows, results = [], {}
    for (name, source), copy in zip(images.items(), annotated_names(list(images)), strict=True):
        photo = estimate_photo(estimator, name, source, annotate_target=out / copy)
        rows += photo.rows
        if photo.faces is None:
            results[name] = {"error": photo.error}
        else:
            width, height = photo.size
            results[name] = {"width": width, "height": height, "faces": [f.to_dict() for f in photo.faces]}
    write_rows(rows, out / "ages.csv")
    (out / "detections.json").write_text(json.dumps({"model": estimator.name, "images": results}, indent=1))
    return rows
