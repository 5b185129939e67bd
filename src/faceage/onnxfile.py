"""Exported model files (torch-free): the faceage metadata an ONNX file carries, and running it over many faces.

``faceage export`` stores everything needed to use a model (name, head, bins, preprocessing, alignment, age offset,
golden outputs) as JSON under the metadata key :data:`MODEL_METADATA_KEY`; :class:`ModelMetadata` is that JSON typed,
with its defaults in one place, and :class:`ModelFile` a file checked to be usable by this faceage. Export, int8
quantisation, the age offset, the teacher and the estimator all read and write it through this module, and open
their ONNX Runtime sessions through :func:`open_session`.

``open_session(..., reference=True)`` runs a file with ONNX Runtime's graph optimisations off: an int8 (QDQ) graph is
then computed as written, each quantise/dequantise step in float, which gives the same answer on every CPU. With
optimisations on (the default, and what users run) ONNX Runtime fuses the graph into integer kernels chosen by
instruction set; for files from ``faceage export --int8`` those agree with the reference on every CPU
(:mod:`faceage.train.quantize`), which the golden outputs stored with each shipped model check
(:mod:`faceage.infer.golden`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceage.errors import WeightsError
from faceage.preprocessing import Preprocessing

if TYPE_CHECKING:  # imported where used: the `onnx` package costs a start a tenth of a second, and running a model
    import onnx  # needs only ONNX Runtime (open_model reads the metadata from the session)

MODEL_METADATA_KEY = "faceage"  # the ONNX metadata entry that holds ModelMetadata as JSON

# largest |int8 weight| that gives the same answer on every CPU: 2 · 255 · 64 = 32,640 fits the saturating int16 into
# which x86 kernels without VNNI add each pair of uint8 × int8 products (faceage.train.quantize)
WEIGHT_LIMIT = 64


@dataclass(frozen=True)
class ModelMetadata:
    """What an exported file says about itself (the JSON under :data:`MODEL_METADATA_KEY`), with the defaults that
    files written by earlier versions lack. Keys this version does not know are kept in ``extra``."""

    name: str
    head: str  # "ages": a distribution over ages 0-100; "bins": a probability per bin
    bins: str
    bin_ages: tuple[float, ...]  # a bins head's age for each bin (the median of its training ages)
    preprocessing: dict  # Preprocessing.to_dict()
    alignment: str
    model: str = ""  # the registered architecture
    members: int = 1  # networks averaged
    version: str | None = None  # the faceage that exported it
    flip_averaged: bool = False
    fit_on: str = "train"  # the splits the members learnt from ("train+val": no unseen validation faces)
    float16_weights: bool = False
    int8: bool = False
    int8_arithmetic: bool = True  # an int8 file that does not say otherwise computes in int8 (earlier versions)
    age_offset: dict | None = None  # faceage.train.offset.AgeOffset.to_metadata()
    age_mapping: dict | None = None  # faceage.train.offset.AgeMapping.to_metadata() (a file has one or the other)
    golden: dict | None = None  # faceage.infer.golden
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> ModelMetadata:
        known = {f.name for f in fields(cls)} - {"extra"}
        missing = [name for name in ("name", "head", "bins", "preprocessing", "alignment") if name not in values]
        if missing:
            raise WeightsError(f"the model's faceage metadata lacks {', '.join(missing)}; export it with 'faceage "
                               "export'")  # fmt: skip
        given = {k: v for k, v in values.items() if k in known}
        given["bin_ages"] = tuple(float(a) for a in given.get("bin_ages", ()))
        return cls(**given, extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict:
        """The JSON form (what :meth:`from_dict` reads back); optional entries that are not set are left out."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        values["bin_ages"] = list(self.bin_ages)
        for name in ("age_offset", "age_mapping", "golden", "version"):
            if values[name] is None:
                del values[name]
        return {**values, **self.extra}

    @property
    def predicts_ages(self) -> bool:
        """A distribution over ages 0-100 (else a probability per bin)."""
        return self.head == "ages"

    @property
    def outputs(self) -> int:
        """Numbers the network gives per face."""
        from faceage.bins import AgeBins

        return 101 if self.predicts_ages else len(AgeBins.parse(self.bins))

    @property
    def offset_years(self) -> float:
        """Years the distributions are moved by (measured at export); 0 without an offset."""
        return float((self.age_offset or {}).get("years", 0.0))

    @property
    def age_map(self):
        """The correction the distributions are carried through (:class:`faceage.distribution.AgeMap`: the stored
        mapping, or the offset as a shift), None without one."""
        from faceage.distribution import AgeMap

        if self.age_mapping:
            return AgeMap.from_metadata(self.age_mapping)
        return AgeMap.shift(self.offset_years) if self.age_offset else None

    @property
    def golden_faces(self) -> int:
        return sum(len(image["faces"]) for image in (self.golden or {}).get("images", []))

    @property
    def input_preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)


@dataclass(frozen=True)
class ModelFile:
    """An exported model file whose metadata this faceage can use (its faces aligned as this faceage aligns)."""

    path: Path
    metadata: ModelMetadata

    @classmethod
    def load(cls, path: Path, session=None) -> ModelFile:
        """The file ``path`` checked; its metadata read with `onnx`, or from ``session`` (ONNX Runtime's copy)."""
        from faceage.detect.align import ALIGNMENT_VERSION, SAME_ALIGNMENT  # detect opens sessions from here

        path = Path(path)
        _check_exists(path)
        if session is None:
            metadata = read_metadata(path)
        else:
            entry = session.get_modelmeta().custom_metadata_map.get(MODEL_METADATA_KEY)
            metadata = ModelMetadata.from_dict(json.loads(_required(entry, path)))
        if metadata.alignment not in SAME_ALIGNMENT:
            raise WeightsError(
                f"{path} was trained on faces aligned as '{metadata.alignment}', this faceage aligns as "
                f"'{ALIGNMENT_VERSION}'; use a faceage version that matches the model"
            )
        return cls(path, metadata)


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise WeightsError(
            f"{path}: no such model file; give 'default', 'fast' or a file from 'faceage export RUN --out m.onnx'"
        )


def open_model(path: Path | str, threads: int = 1, reference: bool = False):
    """(:class:`ModelFile`, ONNX Runtime session) for the exported file ``path``, its metadata read from the session:
    what running a model needs, without importing `onnx`."""
    path = Path(path)
    _check_exists(path)
    try:
        session = open_session(path, threads, reference=reference)
    except Exception as exc:  # ONNX Runtime's errors (InvalidProtobuf, ...) derive from Exception
        raise WeightsError(f"{path}: not an ONNX model ({exc})") from None
    return ModelFile.load(path, session=session), session


def _find(model: onnx.ModelProto):
    return next((p for p in model.metadata_props if p.key == MODEL_METADATA_KEY), None)


def _required(entry, path: Path):
    """The faceage metadata entry of the file ``path`` (as onnx or ONNX Runtime holds it), refused if missing."""
    if entry is None:
        raise WeightsError(f"{path}: no faceage metadata; export models with 'faceage export'")
    return entry


def _entry(model: onnx.ModelProto, path: Path):
    return _required(_find(model), path)


def _load(path: Path, weights: bool = True) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # onnx raises several types for a bad file
        raise WeightsError(f"{path}: not an ONNX model ({exc})") from None


def set_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Store ``metadata`` as the faceage metadata of ``model`` (replacing any)."""
    entry = _find(model)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = MODEL_METADATA_KEY
    entry.value = json.dumps(metadata.to_dict())


def metadata_of(model: onnx.ModelProto, path: Path | str = "the model") -> ModelMetadata:
    return ModelMetadata.from_dict(json.loads(_entry(model, Path(path)).value))


def read_metadata(path: Path) -> ModelMetadata:
    """The faceage metadata of the exported file ``path``."""
    return metadata_of(_load(path, weights=False), path)


def update_metadata(path: Path, **changes) -> ModelMetadata:
    """Rewrite the faceage metadata of the exported file ``path`` with ``changes`` (atomically); returns it."""
    from dataclasses import replace

    from faceage.files import atomic_write_bytes

    model = _load(path)
    metadata = replace(metadata_of(model, path), **changes)
    set_metadata(model, metadata)
    atomic_write_bytes(Path(path), model.SerializeToString())
    return metadata


def probabilities(session, inputs: np.ndarray, prepare: Callable[[np.ndarray], np.ndarray] | None = None,
                  batch: int = 256) -> np.ndarray:  # fmt: skip
    """The model's output for every row of ``inputs`` (through ``prepare`` first, batch by batch, if given), run by
    the ONNX Runtime ``session`` in batches of ``batch``."""
    prepare = prepare or (lambda x: x)
    out = [session.run(None, {"faces": prepare(inputs[i : i + batch])})[0] for i in range(0, len(inputs), batch)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 0))


def open_session(model: Path | str | bytes, threads: int = 1, reference: bool = False):
    """An ONNX Runtime CPU session for an ONNX file (or its bytes) using ``threads`` threads; ``reference``: graph
    optimisations off, so a quantised graph is computed as written (the CPU-independent answer, slower)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle pool threads sleep instead of spinning: a spinning pool took the cores from the photo's other sessions
    # (detector, age model) and from OpenCV, and the photo got slower with two threads than with one
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def weight_peak(model: onnx.ModelProto | Path) -> int:
    """The largest |value| among the int8 weights of an ONNX model or file (0 for a float model)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = _load(Path(model))
    peaks = [int(np.abs(onnx.numpy_helper.to_array(init).astype(np.int32)).max(initial=0))
             for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]  # fmt: skip
    return max(peaks, default=0)
