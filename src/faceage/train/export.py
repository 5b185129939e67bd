"""``faceage export RUN... --out model.onnx``: checkpoints → one ONNX file that carries its preprocessing and bins.

The graph takes the normalised N×3×S×S input and returns probabilities: over ages 0-100 for "ages" models (the
average of the face and its mirror image, the same flip averaging as in evaluation), over the bins for "bins"
models. Several runs of the same preprocessing and bins (e.g. seeds) export as one ensemble that averages their
probabilities. Everything needed to use it (model name, head, bins, preprocessing, alignment) is stored as JSON in the
ONNX metadata under the key ``faceage``, so inference never needs torch or the checkpoint.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

from faceage import __version__
from faceage.data.manifest import atomic_write_bytes
from faceage.detect import ALIGNMENT_VERSION
from faceage.errors import FaceageError
from faceage.models.transfer import fold_affine_layers
from faceage.onnxfile import set_metadata
from faceage.train.module import AgeModule


class AveragedProbabilities(torch.nn.Module):
    """Probabilities of one or several trained modules (averaged), with flip averaging for "ages" models (``flip``:
    None follows the modules' own setting; False halves the cost)."""

    def __init__(self, modules: list[AgeModule], flip: bool | None = None):
        super().__init__()
        self.nets = torch.nn.ModuleList(fold_affine_layers(copy.deepcopy(m.net)) for m in modules)
        first = modules[0]
        wanted = first.hparams.flip_tta if flip is None else flip
        self.flip = bool(wanted and first.head_kind == "ages")

    def forward(self, x):
        total = None
        for net in self.nets:
            probs = F.softmax(net(x), dim=1)
            if self.flip:
                probs = 0.5 * (probs + F.softmax(net(torch.flip(x, dims=[3])), dim=1))
            total = probs if total is None else total + probs
        return total / len(self.nets)


def load_modules(runs: list[Path]) -> list[AgeModule]:
    modules = [AgeModule.load_from_checkpoint(find_checkpoint(r), map_location="cpu").eval() for r in runs]
    first = modules[0].hparams
    for run, module in zip(runs, modules, strict=True):
        h = module.hparams
        if (h.preprocessing, h.bins, h.head) != (first.preprocessing, first.bins, first.head):
            raise FaceageError(f"{run} uses other preprocessing, bins or head than {runs[0]}; they cannot be averaged")
    return modules


def find_checkpoint(run: Path) -> Path:
    """A run folder (its best checkpoint) or a checkpoint file."""
    run = Path(run)
    if run.is_file() and run.suffix == ".ckpt":
        return run
    for candidate in (run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"):
        if candidate.is_file():
            return candidate
    raise FaceageError(f"{run}: no checkpoints/best.ckpt or last.ckpt; give a run folder from 'faceage train'")


def store_weights_as_float16(model: onnx.ModelProto, min_size: int = 1024) -> onnx.ModelProto:
    """Halve the file: large float32 weights are stored as float16 and cast back to float32 in the graph.

    The computation stays float32 (ONNX Runtime's CPU kernels); only the weights lose precision (relative error
    about 5e-4), so probabilities change by roughly 1e-3 at most. Used for the shipped ensemble, whose three
    members would not fit the 20 MB budget in float32.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and array.size >= min_size:
            half = numpy_helper.from_array(array.astype(np.float16), f"{init.name}__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
        else:
            kept.append(init)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return model


def export_onnx(runs: Path | list[Path], out: Path, name: str | None = None, float16_weights: bool = False,
                flip: bool | None = None) -> dict:  # fmt: skip
    """Export the best checkpoint of one run (or the average of several); returns the metadata written."""
    runs = [Path(runs)] if isinstance(runs, str | Path) else [Path(r) for r in runs]
    if not runs:
        raise FaceageError("give at least one run folder to export")
    modules = load_modules(runs)
    module = modules[0]
    wrapper = AveragedProbabilities(modules, flip=flip).eval()
    size = int(module.hparams.preprocessing["input_size"])
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # sizes read as plain ints are meant to become constants (fixed input size)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export_graph(wrapper, size, buffer)
    model = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "name": name or module.hparams.model_name + (f"-ensemble{len(runs)}" if len(runs) > 1 else ""),
        "model": module.hparams.model_name,
        "members": len(runs),
        "version": __version__,
        "head": module.head_kind,
        "bins": module.hparams.bins,
        "bin_ages": list(module.hparams.bin_ages),
        "preprocessing": dict(module.hparams.preprocessing),
        "alignment": ALIGNMENT_VERSION,
        "flip_averaged": wrapper.flip,
        # the splits the members learnt from: a model fit on train+val has no unseen validation faces
        "fit_on": "train+val" if any(m.hparams.get("fit_on") == "train+val" for m in modules) else "train",
        "float16_weights": float16_weights,
    }
    set_metadata(model, metadata)
    if float16_weights:
        model = store_weights_as_float16(model)
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(out), model.SerializeToString())
    return metadata


def _export_graph(wrapper: torch.nn.Module, size: int, buffer: io.BytesIO) -> None:
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


def parity(runs: Path | list[Path], onnx_path: Path, inputs: np.ndarray, flip: bool | None = None) -> float:
    """Largest absolute difference between the checkpoints (torch) and the exported file (ONNX Runtime)."""
    import onnxruntime as ort

    runs = [Path(runs)] if isinstance(runs, str | Path) else [Path(r) for r in runs]
    with torch.no_grad():
        expected = AveragedProbabilities(load_modules(runs), flip=flip)(torch.from_numpy(inputs)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"faces": inputs.astype(np.float32)})[0]
    return float(np.abs(expected - got).max())
