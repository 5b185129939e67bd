"""``AgeEstimator``: photos in, ages out — on ONNX Runtime, without torch.

    from faceage.infer import AgeEstimator
    faces = AgeEstimator(model="model.onnx").predict("photo.jpg")

Each photo goes through the same MTCNN detection and 5-point alignment as the training data, then the exported age
model (which carries its own preprocessing and bins in its metadata). Faces come back largest first.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from faceage.bins import AgeBins
from faceage.detect import MTCNN, Detection, DetectorConfig, align_face, largest_first
from faceage.distribution import head_estimates
from faceage.errors import FaceageError
from faceage.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, load_rgb
from faceage.machine import resolve_threads
from faceage.onnxfile import open_model
from faceage.preprocessing import resize_square
from faceage.weights import model_path


@dataclass(frozen=True)
class Face:
    """One face: where it is (its :class:`~faceage.detect.Detection`) and how old it looks. Age only: faceage never
    estimates gender or ethnicity."""

    detection: Detection  # box (x1, y1, x2, y2 in pixels of the EXIF-corrected photo), 5 landmarks, score
    age: float  # years: expected value of the model's age distribution, after the model's age correction (if any)
    age_low: float  # 80% interval
    age_high: float
    bin: str  # label of the most probable age bin
    bin_probs: dict[str, float] = field(default_factory=dict)

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.detection.box

    @property
    def landmarks(self) -> tuple[tuple[float, float], ...]:
        return self.detection.landmarks  # eyes, nose tip, mouth corners

    @property
    def det_score(self) -> float:
        return self.detection.score

    @property
    def area(self) -> float:
        return self.detection.area

    def to_dict(self) -> dict:
        return {
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "det_score": round(self.det_score, 4),
            "age": round(self.age, 1),
            "age_low": round(self.age_low, 1),
            "age_high": round(self.age_high, 1),
            "bin": self.bin,
            "bin_probs": {k: round(v, 4) for k, v in self.bin_probs.items()},
        }


class AgeEstimator:
    """Age estimates for every face in a photo. ``model``: "default" (None) or "fast" for a model shipped in the
    package, or an ONNX file from ``faceage export``. ``reference=True`` runs the age model as written, without ONNX
    Runtime's graph optimisations: the CPU-independent answer that golden outputs are computed with (slower).
    ``threads``: for the detector's and the age model's networks (and the detector's pyramid); by default
    :func:`faceage.machine.default_threads`, two where the process may use two cores; 1 in each worker of a pool
    (:func:`faceage.infer.predict.worker_estimator`). Every thread count gives the same answer."""

    def __init__(self, model: str | Path | None = None, bins: str | AgeBins | None = None, threads: int | None = None,
                 detector: DetectorConfig | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 reference: bool = False, max_bytes: int = DEFAULT_MAX_BYTES):  # fmt: skip
        threads = resolve_threads(threads)
        self.model, self.session = open_model(model_path(model), threads, reference=reference)
        meta = self.model.metadata
        self.preprocessing = meta.input_preprocessing
        self.model_bins = AgeBins.parse(meta.bins)
        if bins is not None and not isinstance(bins, str | AgeBins):
            raise FaceageError(f"bins must be a string such as '0-17,18-24,25+' or an AgeBins, not "
                               f"{type(bins).__name__} {bins!r}")  # fmt: skip
        self.bins = AgeBins.parse(bins) if isinstance(bins, str) else (bins or self.model_bins)
        if not meta.predicts_ages and self.bins != self.model_bins:
            raise FaceageError(f"this model predicts the bins {self.model_bins}; it cannot answer in other bins")
        self._age_map = self.model.metadata.age_map  # parsed once: every face goes through it
        detector = detector or DetectorConfig()
        self.detector = MTCNN(detector if detector.threads is not None else replace(detector, threads=threads))
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes  # a file or upload larger than this is refused unread (ImageError)

    def with_bins(self, bins: str | AgeBins | None) -> AgeEstimator:
        """The same estimator (sharing its loaded networks) answering in other bins."""
        if bins is None:
            return self
        parsed = AgeBins.parse(bins) if isinstance(bins, str) else bins
        if not self.model.metadata.predicts_ages and parsed != self.model_bins:
            raise FaceageError(f"this model predicts the bins {self.model_bins}; it cannot answer in other bins")
        other = copy.copy(self)
        other.bins = parsed
        return other

    @property
    def name(self) -> str:
        return self.model.metadata.name

    @property
    def age_map(self):
        """The correction the model's distributions are carried through (measured at export,
        ``faceage.train.offset``: an offset or a quantile mapping), None if none."""
        return self._age_map

    def predict(self, image, cropped: bool = False) -> list[Face]:
        """Faces in one image (path, bytes, PIL image or array), largest box first."""
        rgb = load_rgb(image, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
        if cropped:
            return self._estimate(*self._whole_image_face(rgb))
        return self.predict_detected(rgb, self.detector.detect(rgb))

    def predict_detected(self, rgb: np.ndarray, detections: list[Detection]) -> list[Face]:
        """Ages for faces already found in an RGB uint8 array (each :class:`Detection` with its 5 landmarks: eyes,
        nose tip, mouth corners), largest box first: alignment and the age model only."""
        if detections is None or not all(isinstance(d, Detection) for d in detections):
            raise FaceageError("predict_detected takes an RGB array and a list of faceage.detect.Detection (box, 5 "
                               "landmarks, score); pass [] when there are none")  # fmt: skip
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FaceageError("predict_detected takes an H×W×3 uint8 RGB array (faceage.images.load_rgb makes one)")
        detections = largest_first(detections)
        size = self.preprocessing.aligned_size
        crops = [align_face(rgb, d.landmarks, size=size).image for d in detections]
        return self._estimate(detections, crops)

    def predict_batch(self, images, cropped: bool = False) -> list[list[Face]]:
        """``predict`` for many images; with ``cropped=True`` the faces go through the age model in one batch."""
        if images is None or isinstance(images, str | bytes | Path) or not hasattr(images, "__iter__"):
            raise FaceageError("predict_batch takes a list of images (paths, bytes, PIL images or arrays); for one "
                               "image call predict")  # fmt: skip
        if not cropped:
            return [self.predict(image) for image in images]
        wholes, crops = [], []
        for image in images:
            (whole,), (crop,) = self._whole_image_face(
                load_rgb(image, max_pixels=self.max_pixels, max_bytes=self.max_bytes)
            )
            wholes.append(whole)
            crops.append(crop)
        return [[face] for face in self._estimate(wholes, crops)]

    def _whole_image_face(self, rgb: np.ndarray) -> tuple[list[Detection], list[np.ndarray]]:
        """A pre-cropped face: the whole image is the face, resized to the aligned size."""
        height, width = rgb.shape[:2]
        size = self.preprocessing.aligned_size
        aligned = resize_square(rgb, size)
        return [Detection((0.0, 0.0, float(width), float(height)), (), 1.0)], [aligned]

    def estimate_aligned(self, aligned_crops: list[np.ndarray]) -> np.ndarray:
        """The model's probabilities for aligned crops (N×aligned_size×aligned_size×3 uint8)."""
        if not len(aligned_crops):
            return np.zeros((0, self.model.metadata.outputs))
        inputs = self.preprocessing.normalize(np.stack([self.preprocessing.resize(c) for c in aligned_crops]))
        return self.session.run(None, {"faces": inputs})[0].astype(np.float64)

    def _estimate(self, detections: list[Detection], crops: list[np.ndarray]) -> list[Face]:
        meta = self.model.metadata
        found = head_estimates(self.estimate_aligned(crops), self.bins, predicts_ages=meta.predicts_ages,
                               bin_ages=meta.bin_ages, age_map=self.age_map)  # fmt: skip
        ages, lows, highs, bin_probs = found.ages, found.lows, found.highs, found.bin_probs
        faces = []
        for i, detection in enumerate(detections):
            best = int(np.argmax(bin_probs[i]))
            faces.append(
                Face(
                    Detection(
                        tuple(float(v) for v in detection.box), tuple(detection.landmarks), float(detection.score)
                    ),  # fmt: skip
                    age=float(ages[i]),
                    age_low=float(lows[i]),
                    age_high=float(highs[i]),
                    bin=self.bins.labels[best],
                    bin_probs={label: float(p) for label, p in zip(self.bins.labels, bin_probs[i], strict=True)},
                )
            )
        return faces
