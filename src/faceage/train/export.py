"""``faceage export RUN --out model.onnx``: a checkpoint → one ONNX file that carries its own preprocessing and bins.

The graph takes the normalised N×3×S×S input and returns probabilities: over ages 0-100 for "ages" models (the
average of the face and its mirror image, the same flip averaging as in evaluation), over the bins for "bins"
models. Everything needed to use it (model name, head, bins, preprocessing, alignment) is stored as JSON in the
ONNX metadata under the key ``faceage``, so inference never needs torch or the checkpoint.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from faceage import __version__
from faceage.data.manifest import atomic_write_bytes
from faceage.detect import ALIGNMENT_VERSION
from faceage.errors import FaceageError
from faceage.train.module import AgeModule

METADATA_KEY = "faceage"


class _Probabilities(torch.nn.Module):
    def __init__(self, module: AgeModule):
        super().__init__()
        self.net = module.net
        self.flip = bool(module.hparams.flip_tta and module.head_kind == "ages")

    def forward(self, x):
        probs = F.softmax(self.net(x), dim=1)
        if self.flip:
            probs = 0.5 * (probs + F.softmax(self.net(torch.flip(x, dims=[3])), dim=1))
        return probs


def find_checkpoint(run: Path) -> Path:
    """A run folder (its best checkpoint) or a checkpoint file."""
    run = Path(run)
    if run.is_file() and run.suffix == ".ckpt":
        return run
    for candidate in (run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise FaceageError(f"{run}: no checkpoints/best.ckpt or last.ckpt; give a run folder from 'faceage train'")


def export_onnx(run: Path, out: Path, name: str | None = None) -> dict:
    """Export the run's best checkpoint; returns the metadata written into the file."""
    checkpoint = find_checkpoint(run)
    module = AgeModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    wrapper = _Probabilities(module).eval()
    size = int(module.hparams.preprocessing["input_size"])
    buffer = io.BytesIO()
    torch.onnx.export(
        wrapper,
        (torch.zeros(1, 3, size, size),),
        buffer,
        dynamo=False,
        input_names=["faces"],
        output_names=["probabilities"],
        dynamic_axes={"faces": {0: "n"}, "probabilities": {0: "n"}},
        opset_version=17,
    )
    model = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "name": name or module.hparams.model_name,
        "model": module.hparams.model_name,
        "version": __version__,
        "head": module.head_kind,
        "bins": module.hparams.bins,
        "bin_ages": list(module.hparams.bin_ages),
        "preprocessing": dict(module.hparams.preprocessing),
        "alignment": ALIGNMENT_VERSION,
        "flip_averaged": wrapper.flip,
    }
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(out), model.SerializeToString())
    return metadata


def parity(run: Path, onnx_path: Path, inputs: np.ndarray) -> float:
    """Largest absolute difference between the checkpoint (torch) and the exported file (ONNX Runtime)."""
    import onnxruntime as ort

    module = AgeModule.load_from_checkpoint(find_checkpoint(run), map_location="cpu").eval()
    with torch.no_grad():
        expected = _Probabilities(module)(torch.from_numpy(inputs)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"faces": inputs.astype(np.float32)})[0]
    return float(np.abs(expected - got).max())
