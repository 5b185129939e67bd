"""Golden outputs: a model file's own reference answers, and the check that this machine reproduces them.

Each file from ``faceage export`` stores, in its metadata under ``golden``, the faces the estimator finds in a fixed set
of images and its answer for each (age, 80% interval, bin probabilities), computed with the age model run as written
(ONNX Runtime's graph optimisations off: the same on every CPU, :func:`faceage.onnxfile.open_session`). The images
are ones every install has: scikit-image's ``astronaut`` and ``camera`` (each also mirrored, and the astronaut in
grey); the shipped models also store answers for the photos in ``../shared/data/photos``, checked where that folder
is present (matched by content hash). :func:`check_golden` runs the estimator as users run it (optimised kernels,
this CPU) and compares; ``faceage selftest`` and ``tests/test_golden.py`` call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceage.errors import FaceageError

# the estimate may move by this much (years) on another CPU; intervals by AGE_INTERVAL_TOLERANCE, bin masses by
# BIN_TOLERANCE. Measured: a shipped file on two CPUs differs by at most 0.064 years per face (README, "The same
# answer on every CPU")
AGE_TOLERANCE = 0.2
INTERVAL_TOLERANCE = 0.3
BIN_TOLERANCE = 0.02
MIN_IOU = 0.9  # a face counts as the same face when its box overlaps the stored one this much


def _mirrored(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def _grey(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).convert("L").convert("RGB"))  # integer arithmetic: exact everywhere


def builtin_images() -> dict[str, Callable[[], np.ndarray]]:
    """The images every install has (scikit-image's bundled photos), by name."""
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "astronaut-mirrored": lambda: _mirrored(data.astronaut()),
        "astronaut-grey": lambda: _grey(data.astronaut()),
        "camera": lambda: np.stack([data.camera()] * 3, axis=-1),
        "camera-mirrored": lambda: _mirrored(np.stack([data.camera()] * 3, axis=-1)),
    }


def _photo_files(photos: Path | None) -> list[Path]:
    if photos is None:
        return []
    if not Path(photos).is_dir():
        raise FaceageError(f"{photos}: no such folder of photos for golden outputs")
    from faceage.images import IMAGE_SUFFIXES

    return sorted(p for p in Path(photos).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _answers(estimator, image) -> list[dict]:
    return [{"box": [round(v, 2) for v in face.box], "age": round(face.age, 4), "age_low": round(face.age_low, 4),
             "age_high": round(face.age_high, 4), "bin_probs": {k: round(v, 5) for k, v in face.bin_probs.items()}}
            for face in estimator.predict(image)]  # fmt: skip


def compute_golden(model: Path, photos: Path | None = None, reference: bool = True) -> dict:
    """Reference answers of ``model`` on the built-in images (and the photos in the folder ``photos``), computed
    with the age model run as written (``reference=False``: as users run it, on this CPU); the dict stored under
    ``golden`` in the file's metadata."""
    import onnxruntime as ort

    from faceage.infer.estimator import AgeEstimator

    estimator = AgeEstimator(model, reference=reference)
    images = [{"image": name, "faces": _answers(estimator, load())} for name, load in builtin_images().items()]
    for path in _photo_files(photos):
        images.append({"image": path.name, "sha1": _sha1(path), "faces": _answers(estimator, path)})
    how = "run as written" if reference else "run optimised, on this CPU"
    settings = "graph optimisations off" if reference else "graph optimisations on"
    return {
        "computed_with": f"age model {how} (ONNX Runtime {ort.__version__}, {settings})",
        "tolerance": {"age": AGE_TOLERANCE, "interval": INTERVAL_TOLERANCE, "bin_probs": BIN_TOLERANCE},
        "images": images,
    }


def store_golden(model: Path, photos: Path | None = None) -> dict:
    """Compute the golden outputs of ``model`` and store them in the file's metadata; returns them."""
    from faceage.onnxfile import update_metadata

    golden = compute_golden(model, photos)
    update_metadata(model, golden=golden)
    return golden


@dataclass(frozen=True)
class ImageCheck:
    image: str
    faces: int  # faces stored for this image
    age_change: float  # largest |age here - stored| over its faces, years
    interval_change: float
    bin_change: float
    problem: str = ""  # why it does not match, or "" when it does

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class GoldenReport:
    model: str
    path: Path
    computed_with: str
    images: list[ImageCheck] = field(default_factory=list)
    not_here: list[str] = field(default_factory=list)  # stored photos this machine lacks (not checked)

    @property
    def ok(self) -> bool:
        return bool(self.images) and all(check.ok for check in self.images)

    @property
    def faces(self) -> int:
        return sum(check.faces for check in self.images)

    @property
    def age_change(self) -> float:
        return max((check.age_change for check in self.images), default=0.0)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _compare(name: str, stored: list[dict], got: list[dict]) -> ImageCheck:
    if len(stored) != len(got):
        return ImageCheck(name, len(stored), float("nan"), float("nan"), float("nan"),
                          f"{len(got)} faces found here, {len(stored)} stored")  # fmt: skip
    age = interval = bins = 0.0
    for want, have in zip(stored, got, strict=True):
        if _iou(want["box"], have["box"]) < MIN_IOU:
            return ImageCheck(name, len(stored), float("nan"), float("nan"), float("nan"),
                              f"a face was found at {have['box']}, stored at {want['box']}")  # fmt: skip
        age = max(age, abs(have["age"] - want["age"]))
        interval = max(interval, abs(have["age_low"] - want["age_low"]), abs(have["age_high"] - want["age_high"]))
        bins = max(bins, *(abs(have["bin_probs"][k] - p) for k, p in want["bin_probs"].items()))
    problems = [f"{what} moved by {value:.3f} (tolerance {limit})" for what, value, limit in
                (("age", age, AGE_TOLERANCE), ("interval", interval, INTERVAL_TOLERANCE),
                 ("bin probability", bins, BIN_TOLERANCE)) if value > limit]  # fmt: skip
    return ImageCheck(name, len(stored), age, interval, bins, "; ".join(problems))


def check_golden(model: str | Path | None = None, photos: Path | None = None, threads: int = 1) -> GoldenReport:
    """Run ``model`` as users run it on this machine over the images of its golden outputs (the built-in ones, and
    those of the folder ``photos`` whose content matches a stored photo) and compare with the stored answers."""
    from faceage.infer.estimator import AgeEstimator

    estimator = AgeEstimator(model, threads=threads)
    golden = estimator.model.metadata.golden
    if not golden:
        raise FaceageError(f"{estimator.model.path} carries no golden outputs; export it again with this faceage "
                           "('faceage export' stores them)")  # fmt: skip
    builtin = builtin_images()
    here = {_sha1(path): path for path in _photo_files(photos)}
    checks, missing = [], []
    for entry in golden["images"]:
        if entry["image"] in builtin and "sha1" not in entry:
            image = builtin[entry["image"]]()
        elif entry.get("sha1") in here:
            image = here[entry["sha1"]]
        else:
            missing.append(entry["image"])
            continue
        checks.append(_compare(entry["image"], entry["faces"], _answers(estimator, image)))
    return GoldenReport(estimator.name, estimator.model.path, golden.get("computed_with", ""), checks, missing)


def mismatch_cause(model: Path) -> str:
    """Why this machine's answers for the file ``model`` may differ from its reference, as far as it can be told."""
    import onnx

    from faceage.machine import cpu_info
    from faceage.onnxfile import WEIGHT_LIMIT, weight_peak

    cpu = cpu_info()
    graph = onnx.load(str(model), load_external_data=False).graph
    if not any(node.op_type == "QuantizeLinear" for node in graph.node):
        return (f"this machine's ONNX Runtime ({cpu.describe()}) computes other values than the model as written; "
                "please report it with the output of 'faceage selftest'")  # fmt: skip
    peak = weight_peak(model)
    if peak > WEIGHT_LIMIT and cpu.x86 and not cpu.vnni:
        return (f"the file computes in int8 with weights up to ±{peak}, and this CPU ({cpu.describe()}) has no "
                "VNNI: ONNX Runtime's U8S8 kernels add pairs of products into a saturating int16 here; export the "
                "model again with this faceage (int8 weights, float arithmetic: the same answer on every "
                "CPU)")  # fmt: skip
    return (f"the file computes in int8 (quantised activations), whose answer jumps when a face crop changes by one "
            f"grey level, and the detector's float arithmetic differs slightly between CPUs ({cpu.describe()} "
            "here); export the model again with this faceage (int8 weights, float arithmetic)")  # fmt: skip
