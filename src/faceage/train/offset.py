"""The age correction of an exported model, fitted on validation faces: ``faceage export ... --age-correction-data
DATA`` stores an offset, with ``--age-mapping STRENGTH`` a quantile mapping instead.

A distribution's expected value is the estimate with the least *squared* error; the *absolute* error (MAE, the figure
we are judged on) is least at the median of the errors. Our models' estimates are right on average (mean signed error
about 0 on the validation faces) but their errors are skewed: the old are aged down by many years, most other people
aged up by a little, so the estimate lies above the true age more often than below. Moving every estimate by the
median of (true age - estimate) over the validation faces of DATA, about half a year down for our models, lowers
the MAE on faces the offset never saw: the test split, in ``benchmarks/evaluation.py`` (README, "Evaluation").

An offset cannot undo the regression to the middle: the young are aged up and the old aged down (README, "The next
generation": -6.7 years at 60+). A quantile mapping can: the estimate's quantile among the validation faces is sent to
the true age at the same quantile (strength 1; 0.5 goes halfway), a monotone map that stretches the ends of the age
range. It lowers the bias per age band at a small cost in MAE (``benchmarks/bias.py`` measures both, fitted on one
half of the validation faces and measured on the other).

Either is measured with the file as written (int8 when it is) and stored in its metadata (``age_offset`` or
``age_mapping``, one or the other); :class:`faceage.infer.estimator.AgeEstimator` carries the whole age
distribution through it (:class:`faceage.distribution.AgeMap`), so the estimate, the interval and the bin
probabilities stay one consistent answer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceage.data.prepared import PreparedData
from faceage.distribution import MAX_AGE_CLASS, AgeMap, expected_age
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

    def describe(self) -> str:
        return f"age offset {self.years:+.2f} years"


@dataclass(frozen=True)
class AgeMapping:
    age_map: AgeMap
    strength: float  # 1: the estimates' distribution becomes the true ages'; 0.5: halfway
    from_age: float | None  # below it the median offset (None: the whole range mapped)
    faces: int
    mae_before: float  # on the faces it was fitted on
    mae_after: float
    source: str

    def to_metadata(self) -> dict:
        return {"sources": [round(v, 4) for v in self.age_map.sources],
                "targets": [round(v, 4) for v in self.age_map.targets], "strength": self.strength,
                "from_age": self.from_age,
                "faces": self.faces, "source": self.source, "mae_before": round(self.mae_before, 3),
                "mae_after": round(self.mae_after, 3)}  # fmt: skip

    def describe(self) -> str:
        return f"age quantile mapping (strength {self.strength:g})"


# knots at these quantiles of the estimates: every 2%, the outermost 0.5% of faces too few to place a knot on
MAPPING_QUANTILES = np.linspace(0.005, 0.995, 51)
# From which age the mapping replaces the offset (reached fully RAMP years later). Chosen on validation faces
# (benchmarks/bias.py, cross-fitted; the default network): mapped from 45, the 60+ bias falls from -6.8 to -3.4 at
# the offset's MAE and five-bin accuracy; mapping the whole range also lowers the young's bias but costs 2.8 points of
# five-bin accuracy (64.0% against 66.8%), the estimates then less concentrated where the bins' edges lie.
MAPPING_FROM_AGE = 45.0
RAMP = 5.0  # years
GRID = np.linspace(-0.5, MAX_AGE_CLASS + 0.5, 2 * MAX_AGE_CLASS + 3)  # the stored map's knots: every half year


def check_mapping_strength(strength: float) -> None:
    if not 0.0 < strength <= 1.0:
        raise FaceageError(f"an age mapping's strength is above 0 and at most 1 (1: the full quantile mapping, 0.5: "
                           f"halfway), not {strength}")  # fmt: skip


def fit_quantile_mapping(truth: np.ndarray, estimate: np.ndarray, strength: float = 1.0,
                         from_age: float | None = MAPPING_FROM_AGE,
                         up_to_age: float | None = None) -> AgeMap:  # fmt: skip
    """The monotone map sending each quantile of ``estimate`` to ``(1 - strength)`` × itself + ``strength`` × the
    same quantile of ``truth`` (whole years, each read as a point within its year: [a - 0.5, a + 0.5), fixed seed).
    With ``from_age``, ages below it are moved by the median offset instead, the mapping blended in linearly over
    the next RAMP years; None maps the whole range. ``up_to_age`` maps the young end too: below it the mapping again,
    blended out over the RAMP years before it (the median offset between the two ends)."""
    check_mapping_strength(strength)
    truth, estimate = np.asarray(truth, dtype=float), np.asarray(estimate, dtype=float)
    within = np.random.default_rng(0).uniform(-0.5, 0.5, len(truth))
    sources = np.quantile(estimate, MAPPING_QUANTILES)
    targets = (1 - strength) * sources + strength * np.quantile(truth + within, MAPPING_QUANTILES)
    mapped = AgeMap(*_rising(sources, targets)).forward(GRID)
    if from_age is not None:
        shifted = GRID + float(np.median(truth - estimate))
        share = np.clip((GRID - from_age) / RAMP, 0.0, 1.0)
        if up_to_age is not None:
            share = np.maximum(share, np.clip((up_to_age - GRID) / RAMP, 0.0, 1.0))
        mapped = shifted + share * (mapped - shifted)
    return AgeMap(*_rising(GRID, mapped))


def _rising(sources: np.ndarray, targets: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The knots without those too close to the one before (ties), until both sides rise."""
    keep = np.ones(len(sources), dtype=bool)
    while True:
        sources, targets = sources[keep], targets[keep]
        keep = np.concatenate([[True], (np.diff(sources) > 1e-3) & (np.diff(targets) > 1e-3)])
        if keep.all():
            return tuple(float(v) for v in sources), tuple(float(v) for v in targets)


def validation_probabilities(model: Path, data_dir: PreparedData | Path, min_faces: int = MIN_FACES,
                             what: str = "an age correction") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The age distributions of ``model`` (a file from ``faceage export``, computed as written) for the validation
    faces of the prepared folder ``data_dir`` (at least ``min_faces`` of them), and those faces' true ages."""
    from faceage.train.data import load_split_arrays

    metadata = read_metadata(model)
    if not metadata.predicts_ages:
        raise FaceageError(f"{model} predicts bins, not a distribution over ages; only age models take {what}")
    if metadata.fit_on != "train":
        raise FaceageError(
            f"{model} learnt from the {SPLIT} faces too (fit on {metadata.fit_on}): {what} cannot be measured "
            "on faces it has seen; measure a train-only model of the recipe"
        )
    preprocessing = metadata.input_preprocessing
    faces = load_split_arrays(data_dir, preprocessing, show_progress=False)[SPLIT]
    if len(faces.ages) < min_faces:
        raise FaceageError(f"{data_dir}: {len(faces.ages)} {SPLIT} faces are too few to measure {what} "
                           f"(at least {min_faces}: measured on fewer it is off by a year or more)")  # fmt: skip
    # computed as written (int8 included): the correction is then the same whichever CPU measures it
    probs = probabilities(open_session(model, threads=os.cpu_count() or 1, reference=True), faces.images,
                          prepare=preprocessing.normalize)  # fmt: skip
    return probs, faces.ages.astype(np.float64)


def measure_age_offset(model: Path, data_dir: PreparedData | Path, min_faces: int = MIN_FACES) -> AgeOffset:
    """The median of (true age - expected age) of ``model`` (a file from ``faceage export``) over the validation faces
    of the prepared folder ``data_dir`` (at least ``min_faces`` of them)."""
    probs, truth = validation_probabilities(model, data_dir, min_faces, "an age offset")
    estimate = expected_age(probs)
    years = float(np.median(truth - estimate))
    return AgeOffset(years, len(truth), float(np.abs(estimate - truth).mean()),
                     float(np.abs(expected_age(probs, AgeMap.shift(years)) - truth).mean()),
                     f"{data_dir} ({SPLIT} split)")  # fmt: skip


def apply_age_offset(model: Path, data_dir: PreparedData | Path, min_faces: int = MIN_FACES) -> AgeOffset:
    """Measure the offset of ``model`` on ``data_dir`` and store it in the file's metadata (replacing a mapping)."""
    offset = measure_age_offset(model, data_dir, min_faces)
    update_metadata(model, age_offset=offset.to_metadata(), age_mapping=None)
    return offset


def measure_age_mapping(
    model: Path,
    data_dir: PreparedData | Path,
    strength: float = 1.0,
    from_age: float | None = MAPPING_FROM_AGE,
    min_faces: int = MIN_FACES,
) -> AgeMapping:
    """The quantile mapping of ``strength`` (from ``from_age``) from the expected ages of ``model`` to the true ages
    of the validation faces of ``data_dir`` (:func:`fit_quantile_mapping`)."""
    probs, truth = validation_probabilities(model, data_dir, min_faces, "an age mapping")
    estimate = expected_age(probs)
    age_map = fit_quantile_mapping(truth, estimate, strength, from_age)
    return AgeMapping(age_map, float(strength), from_age, len(truth), float(np.abs(estimate - truth).mean()),
                      float(np.abs(expected_age(probs, age_map) - truth).mean()),
                      f"{data_dir} ({SPLIT} split)")  # fmt: skip


def apply_age_mapping(
    model: Path,
    data_dir: PreparedData | Path,
    strength: float = 1.0,
    from_age: float | None = MAPPING_FROM_AGE,
    min_faces: int = MIN_FACES,
) -> AgeMapping:
    """Fit the quantile mapping of ``model`` on ``data_dir`` and store it in the file's metadata (replacing an
    offset)."""
    mapping = measure_age_mapping(model, data_dir, strength, from_age, min_faces)
    update_metadata(model, age_mapping=mapping.to_metadata(), age_offset=None)
    return mapping
