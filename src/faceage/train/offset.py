"""The age offset of an exported model: ``faceage export ... --age-offset-data DATA``.

A distribution's expected value is the estimate with the least *squared* error; the *absolute* error (MAE, the figure
we are judged on) is least at the median of the errors. Our models' estimates are right on average (mean signed error
about 0 on the validation faces) but their errors are skewed: the old are aged down by many years, most other people
aged up by a little, so the estimate lies above the true age more often than below. Moving every estimate by the
median of (true age - estimate) over the validation faces of DATA, about half a year down for our models, lowers
the MAE on faces the offset never saw: the test split, in ``benchmarks/evaluation.py`` (README, "Evaluation").

The offset is measured with the file as written (int8 when it is) and stored in its metadata as ``age_offset``;
:class:`faceage.infer.estimator.AgeEstimator` moves the whole age distribution by it, so the estimate, the interval
and the bin probabilities stay one consistent answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceage.data.prepared import PreparedData
from faceage.distribution import expected_age
from faceage.errors import FaceageError
from faceage.onnxfile import open_session, probabilities, read_metadata, update_metadata

SPLIT = "val"
MIN_FACES = 200


@dataclass(frozen=True)
class AgeOffset:
    years: float  # added to every estimate
    faces: int
    mae_before: float  # on the faces it was measured on
    mae_after: float
    source: str

    def to_metadata(self) -> dict:
        return {"years": round(self.years, 3), "faces": self.faces, "source": self.source,
                "mae_before": round(self.mae_before, 3), "mae_after": round(self.mae_after, 3)}  # fmt: skip


def measure_age_offset(model: Path, data_dir: PreparedData | Path, min_faces: int = MIN_FACES) -> AgeOffset:
    """The median of (true age - expected age) of ``model`` (a file from ``faceage export``) over the validation faces
    of the prepared folder ``data_dir`` (at least ``min_faces`` of them)."""
    from faceage.train.data import load_split_arrays

    metadata = read_metadata(model)
    if not metadata.predicts_ages:
        raise FaceageError(f"{model} predicts bins, not a distribution over ages; only age models take an offset")
    if metadata.fit_on != "train":
        raise FaceageError(
            f"{model} learnt from the {SPLIT} faces too (fit on {metadata.fit_on}): its offset cannot be measured "
            "on faces it has seen; measure a train-only model of the recipe"
        )
    preprocessing = metadata.input_preprocessing
    faces = load_split_arrays(data_dir, preprocessing, show_progress=False)[SPLIT]
    if len(faces.ages) < min_faces:
        raise FaceageError(f"{data_dir}: {len(faces.ages)} {SPLIT} faces are too few to measure an age offset "
                           f"(at least {min_faces}: the median of fewer errors is off by a year or more)")  # fmt: skip
    # computed as written (int8 included): the offset is then the same whichever CPU measures it
    probs = probabilities(open_session(model, threads=os.cpu_count() or 1, reference=True), faces.images,
                          prepare=preprocessing.normalize)  # fmt: skip
    estimate, truth = expected_age(probs), faces.ages.astype(np.float64)
    years = float(np.median(truth - estimate))
    return AgeOffset(years, len(truth), float(np.abs(estimate - truth).mean()),
                     float(np.abs(np.maximum(estimate + years, 0.0) - truth).mean()),
                     f"{data_dir} ({SPLIT} split)")  # fmt: skip


def apply_age_offset(model: Path, data_dir: PreparedData | Path, min_faces: int = MIN_FACES) -> AgeOffset:
    """Measure the offset of ``model`` on ``data_dir`` and store it in the file's metadata."""
    offset = measure_age_offset(model, data_dir, min_faces)
    update_metadata(model, age_offset=offset.to_metadata())
    return offset
