"""Exported model files (torch-free): the faceage metadata an ONNX file carries, and running it over many faces.

``faceage export`` stores everything needed to use a model (name, head, bins, preprocessing, alignment, age offset)
as JSON under the metadata key ``faceage``; export, int8 quantisation, the age offset and the estimator all read and
write it through these functions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from faceage.errors import WeightsError
from faceage.preprocessing import MODEL_METADATA_KEY


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
