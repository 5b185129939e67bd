"""MTCNN face detection (P-Net → R-Net → O-Net) on ONNX Runtime, with weights read from the `mtcnn` package.

The `mtcnn` package (MIT) ships the trained P/R/O-Net weights as joblib/lz4 files of Keras arrays. Importing that
package imports TensorFlow, so we only read its asset files (located with :mod:`importlib.util`), rebuild the three
small networks as ONNX graphs (:mod:`faceage.detect.mtcnn_graphs`; kept in the user's cache folder, see
:func:`network_bytes`) and run them with ONNX Runtime.
No TensorFlow and no torch at run time; nothing is downloaded or copied into this repository.

The cascade follows Zhang et al. (2016): an image pyramid scanned by P-Net (12×12 windows, stride 2), NMS per scale
and across scales, R-Net on 24×24 crops of the squared proposals, O-Net on 48×48 crops giving the final score, box
regression and five landmarks (left eye, right eye, nose, left and right mouth corner, in image pixels).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from faceage.errors import FaceageError, WeightsError
from faceage.files import atomic_write_bytes, user_cache_dir
from faceage.machine import resolve_threads
from faceage.onnxfile import open_session


@dataclass(frozen=True)
class Detection:
    """One detected face: box (x1, y1, x2, y2) and 5 landmarks (x, y) in pixels of the input image."""

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict:
        return {
            "box": [round(v, 2) for v in self.box],
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in self.landmarks],
            "score": round(self.score, 5),
        }


@dataclass(frozen=True)
class DetectorConfig:
    """MTCNN settings.

    The cascade's own thresholds (0.6 / 0.7 / 0.7) are those of the reference implementation. Two final filters,
    both documented defaults rather than special cases: ``min_score`` 0.9 (the reference reports small false
    detections at 0.81 and 0.88 in two test portraits, while every real face there scores 0.955 or more), and
    ``min_face_fraction`` 0.015: a face whose box is narrower than 1.5% of the photo's shorter side is ignored (too
    small to judge an age; in large photos such boxes are mostly false). The same fraction raises the smallest face
    the image pyramid looks for, which makes large photos much faster.

    ``min_face_size`` 32: the smallest face (box side, pixels) the pyramid looks for. The reference uses 20, but
    age estimates from smaller faces are much worse: UTKFace validation photos shrunk until the face box is 20 px
    wide are estimated with a 26% larger error than at 64 px and above, 32 px ones with 4% more
    (``python benchmarks/face_size.py``). Not looking for them also cuts the detector's time on a photo by a third to
    a half (``python benchmarks/speed.py``).
    Pass 20 (or ``faceage predict --min-face 20``) to find the smallest faces anyway.

    ``threads``: ONNX Runtime threads for each network (by default :func:`faceage.machine.default_threads`); from 2
    on, the pyramid's levels are also resized on a thread of their own while P-Net scans (the detections are the
    same for every count, ``tests/test_detect.py``).
    """

    min_face_size: int = 32
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_thresholds: tuple[float, float, float, float] = (
        0.5,
        0.7,
        0.7,
        0.7,
    )  # pnet per scale, pnet all, rnet, onet
    min_score: float = 0.9
    min_face_fraction: float = 0.015
    threads: int | None = None  # None: faceage.machine.default_threads()

    def __post_init__(self) -> None:
        if self.min_face_size < 12:
            raise FaceageError(
                f"the smallest face must be at least 12 px (the detector's window), got {self.min_face_size}"
            )


# ----------------------------------------------------------------------------------------------------------------
# The three networks: rebuilt from the mtcnn package's Keras weights (faceage.detect.mtcnn_graphs), cached on disk
# ----------------------------------------------------------------------------------------------------------------


def mtcnn_weights_dir() -> Path:
    """Folder holding pnet.lz4, rnet.lz4 and onet.lz4 inside the installed `mtcnn` package (not imported)."""
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "the MTCNN weights come from the 'mtcnn' package, which is not installed: run 'pip install mtcnn==1.0.0'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "assets" / "weights"
    missing = [n for n in ("pnet.lz4", "rnet.lz4", "onet.lz4") if not (folder / n).is_file()]
    if missing:
        raise WeightsError(f"the 'mtcnn' package at {folder} lacks {missing}; reinstall it: pip install mtcnn==1.0.0")
    return folder


def network_bytes(name: str, rebuild: bool = False) -> bytes:
    """The serialised ONNX graph of the network ``name`` (pnet, rnet or onet). Building it (importing `onnx` and
    `joblib` included) took a third of a second of every start, so the graph is kept in the user's cache folder
    (:func:`faceage.files.user_cache_dir`) as ``mtcnn-NAME-KEY-CONTENT.onnx``: KEY hashes its weights file and the
    building code (new weights or a new builder build anew), CONTENT hashes the graph itself, checked at every read
    (a damaged file is built again). A cached graph is the very bytes a build gives (tested), so answers do not
    depend on it; a folder that cannot be written to costs the build at each start, nothing else.
    ``rebuild``: build even if the cache holds it (and store the new bytes)."""
    builder = importlib.util.find_spec("faceage.detect.mtcnn_graphs").origin
    source = mtcnn_weights_dir() / f"{name}.lz4"
    key = hashlib.sha256(source.read_bytes() + Path(builder).read_bytes()).hexdigest()[:16]
    folder = user_cache_dir()
    for cached in [] if rebuild else sorted(folder.glob(f"mtcnn-{name}-{key}-*.onnx")):
        try:
            graph = cached.read_bytes()
        except OSError:
            continue
        if cached.stem.rsplit("-", 1)[1] == hashlib.sha256(graph).hexdigest()[:16]:
            return graph
        cached.unlink(missing_ok=True)  # damaged: build it again
    from faceage.detect import mtcnn_graphs

    graph = {"pnet": mtcnn_graphs.build_pnet, "rnet": mtcnn_graphs.build_rnet, "onet": mtcnn_graphs.build_onet}[name]()
    try:
        atomic_write_bytes(folder / f"mtcnn-{name}-{key}-{hashlib.sha256(graph).hexdigest()[:16]}.onnx", graph)
    except OSError:
        pass
    return graph


@cache
def _networks(threads: int) -> tuple[ort.InferenceSession, ort.InferenceSession, ort.InferenceSession]:
    return tuple(open_session(network_bytes(name), threads) for name in ("pnet", "rnet", "onet"))


# ----------------------------------------------------------------------------------------------------------------
# The cascade
# ----------------------------------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Non-maximum suppression as in the reference MTCNN; returns kept indices, best score first.

    A box is dropped when it overlaps *any* higher-scoring box by more than ``threshold`` (also one that was itself
    dropped), which removes a little more than greedy NMS. ``method`` "union" is IoU, "min" is intersection over the
    smaller box.
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    w = np.maximum(0.0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    h = np.maximum(0.0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = w * h
    if method == "min":
        denom = np.minimum(areas[:, None], areas[None])
    else:
        denom = areas[:, None] + areas[None] - inter
    overlap = inter / np.maximum(denom, 1e-9)
    suppressed = np.triu(overlap > threshold, k=1).any(axis=0)
    return order[~suppressed]


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 (or float) pixels → MTCNN's input range, (x - 127.5) / 128, float32."""
    return (rgb.astype(np.float32) - 127.5) / 128.0


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Bilinear crops of ``boxes`` of the uint8 photo resized to size×size, normalised (NCHW); outside the photo the
    crop is mid-grey (0 after normalisation, as in the reference).

    Sampling follows the reference implementation (TensorFlow's crop_and_resize on boxes normalised by the image
    size): the first and last samples sit on the box edges, scaled by (dim - 1) / dim.
    """
    height, width = rgb.shape[:2]
    patches = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
    fx, fy = (width - 1) / width, (height - 1) / height
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, :4]):
        matrix = np.array(
            [[(x2 - x1) * fx / (size - 1), 0, x1 * fx], [0, (y2 - y1) * fy / (size - 1), y1 * fy]],
            dtype=np.float64,
        )
        patches[k] = cv2.warpAffine(
            rgb,
            matrix,
            (size, size),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(128, 128, 128),
        )
    return np.ascontiguousarray(_normalize(patches).transpose(0, 3, 1, 2))


class MTCNN:
    """Face detector: ``MTCNN().detect(rgb_uint8)`` → list of :class:`Detection`, highest score first."""

    def __init__(self, config: DetectorConfig | None = None):
        config = config or DetectorConfig()
        self.config = replace(config, threads=resolve_threads(config.threads))
        self.pnet, self.rnet, self.onet = _networks(self.config.threads)
        # with two threads or more the pyramid's levels are resized on a thread of their own while P-Net scans the
        # levels before them (OpenCV and ONNX Runtime both release the GIL): the same levels, sooner
        self._resizer = ThreadPoolExecutor(1, thread_name_prefix="mtcnn-pyramid") if self.config.threads > 1 else None

    def smallest_face(self, height: int, width: int) -> float:
        return max(float(self.config.min_face_size), self.config.min_face_fraction * min(height, width))

    def scales(self, height: int, width: int) -> list[float]:
        c = self.config
        base = 12.0 / self.smallest_face(height, width)
        side = min(height, width) * base
        out, scale = [], base
        while side >= 12:
            out.append(scale)
            scale *= c.scale_factor
            side *= c.scale_factor
        return out

    def pyramid(self, rgb: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        """(scale, normalised 1×3×H×W image) for each level of the P-Net pyramid.

        Every level is resized from the photo itself with area interpolation, as in the reference (resizing the
        later levels from the first one is 20% faster but moved boxes enough to miss a reference face), and is
        normalised after resizing, so only the pyramid's pixels are converted to float.
        """
        height, width = rgb.shape[:2]
        scales = [s for s in self.scales(height, width) if min(int(height * s), int(width * s)) >= 12]

        def level(scale: float) -> tuple[float, np.ndarray]:
            size = (int(width * scale), int(height * scale))
            scaled = _normalize(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
            return scale, np.ascontiguousarray(scaled.transpose(2, 0, 1)[None])

        yield from map(level, scales) if self._resizer is None else self._resizer.map(level, scales)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        c = self.config
        height, width = rgb.shape[:2]

        # Stage 1: P-Net over the pyramid
        proposals = []
        for scale, scaled in self.pyramid(rgb):
            reg, prob = self.pnet.run(None, {"image": scaled})
            score = prob[0, 1]
            ys, xs = np.nonzero(score > c.thresholds[0])
            if ys.size == 0:
                continue
            # window of cell (ys, xs): (2x + 1, 2y + 1) to (2x + 12, 2y + 12), the original implementation's convention
            x1, y1 = xs * 2.0 + 1, ys * 2.0 + 1
            x2, y2 = xs * 2.0 + 12, ys * 2.0 + 12
            dx1, dy1, dx2, dy2 = (reg[0, i, ys, xs] for i in range(4))
            boxes = np.stack([x1 + dx1 * 11, y1 + dy1 * 11, x2 + dx2 * 11, y2 + dy2 * 11], axis=1) / scale
            s = score[ys, xs]
            keep = nms(boxes, s, c.nms_thresholds[0])
            proposals.append(np.column_stack([boxes[keep], s[keep]]))
        if not proposals:
            return []
        boxes = np.concatenate(proposals)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], c.nms_thresholds[1])]
        boxes[:, :4] = _square(boxes[:, :4])

        # Stage 2: R-Net refines
        reg, prob = self.rnet.run(None, {"image": _crops(rgb, boxes, 24)})
        keep = prob[:, 1] > c.thresholds[1]
        boxes, reg, boxes_score = boxes[keep], reg[keep], prob[keep, 1]
        if not len(boxes):
            return []
        boxes[:, 4] = boxes_score
        boxes[:, :4] = self._regress(boxes[:, :4], reg)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], c.nms_thresholds[2])]
        boxes[:, :4] = _square(boxes[:, :4])

        # Stage 3: O-Net gives final score, box and landmarks
        reg, marks, prob = self.onet.run(None, {"image": _crops(rgb, boxes, 48)})
        keep = prob[:, 1] > max(c.thresholds[2], 0.0)
        boxes, reg, marks, scores = boxes[keep], reg[keep], marks[keep], prob[keep, 1]
        if not len(boxes):
            return []
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points_x = boxes[:, 0:1] + w * marks[:, 0:5] - 1
        points_y = boxes[:, 1:2] + h * marks[:, 5:10] - 1
        final = self._regress(boxes[:, :4], reg)
        keep = nms(final, scores, c.nms_thresholds[3], method="min")
        detections = []
        min_side = c.min_face_fraction * min(height, width)
        for i in keep:
            if scores[i] < c.min_score:
                continue
            x1, y1, x2, y2 = final[i]
            box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            if min(box[2] - box[0], box[3] - box[1]) < max(min_side, 1.0):
                continue
            lms = tuple((float(points_x[i, j]), float(points_y[i, j])) for j in range(5))
            detections.append(Detection(tuple(float(v) for v in box), lms, float(scores[i])))
        return sorted(detections, key=lambda d: -d.score)

    @staticmethod
    def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
        w = boxes[:, 2] - boxes[:, 0] + 1
        h = boxes[:, 3] - boxes[:, 1] + 1
        return boxes + reg * np.stack([w, h, w, h], axis=1)
