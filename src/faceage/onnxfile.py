"""Exported model files (torch-free): the faceage metadata an ONNX file carries, and running it over many faces.

``faceage export`` stores everything needed to use a model (name, head, bins, preprocessing, alignment, age offset)
as JSON under the metadata key ``faceage``; export, int8 quantisation, the age offset and the estimator all read and
write it through these functions, and open their ONNX Runtime sessions through :func:`open_session`.

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
from pathlib import Path

import numpy as np
import onnx

from faceage.errors import WeightsError
from faceage.preprocessing import MODEL_METADATA_KEY

# largest |int8 weight| that gives the same answer on every CPU: 2 · 255 · 64 = 32,640 fits the saturating int16 into
# which x86 kernels without VNNI add each pair of uint8 × int8 products (faceage.train.quantize)
WEIGHT_LIMIT = 64


def _find(model: onnx.ModelProto):
    return next((p for p in model.metadata_props if p.key == MODEL_METADATA_KEY), None)


def _entry(model: onnx.ModelProto, path: Path):
    entry = _find(model)
    if entry is None:
        raise WeightsError(f"{path}: no faceage metadata; export models with 'faceage export'")
    return entry


def _load(path: Path, weights: bool = True) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # onnx raises several types for a bad file
        raise WeightsError(f"{path}: not an ONNX model ({exc})") from None


def set_metadata(model: onnx.ModelProto, metadata: dict) -> None:
    """Store ``metadata`` as the faceage metadata of ``model`` (replacing any)."""
    entry = _find(model)
    if entry is None:
        entry = model.metadata_props.add()
        entry.key = MODEL_METADATA_KEY
    entry.value = json.dumps(metadata)


def read_metadata(path: Path) -> dict:
    """The faceage metadata of the exported file ``path``."""
    return json.loads(_entry(_load(path, weights=False), path).value)


def update_metadata(path: Path, **changes) -> dict:
    """Rewrite the faceage metadata of the exported file ``path`` with ``changes`` (atomically); returns it."""
    from faceage.data.manifest import atomic_write_bytes  # pandas: not on the estimator's import path

    model = _load(path)
    metadata = {**json.loads(_entry(model, path).value), **changes}
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
    options.log_severity_level = 3
    if reference:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def weight_peak(model: onnx.ModelProto | Path) -> int:
    """The largest |value| among the int8 weights of an ONNX model or file (0 for a float model)."""
    if not isinstance(model, onnx.ModelProto):
        model = _load(Path(model))
    peaks = [int(np.abs(onnx.numpy_helper.to_array(init).astype(np.int32)).max(initial=0))
             for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8]  # fmt: skip
    return max(peaks, default=0)
