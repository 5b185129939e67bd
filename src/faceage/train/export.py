"""``faceage export RUN... --out model.onnx``: checkpoints → one ONNX file that carries its preprocessing and bins.

The graph takes the normalised N×3×S×S input and returns probabilities: over ages 0-100 for "ages" models (the
average of the face and its mirror image, the same flip averaging as in evaluation), over the bins for "bins"
models. Several runs of the same bins and head export as one ensemble that averages their probabilities (with
``weights``, a weighted average). Runs with other input crops can be averaged too when their crops lie inside the
first run's (same normalisation, e.g. Cydral's 64 px crop inside dlibface's 150 px one): the file takes the first
run's input and the graph resamples the other members' crops from it (:func:`area_resampling`). Everything needed
to use it (model name, head, bins, preprocessing, alignment) is stored as JSON in the ONNX metadata under the key
``faceage``, so inference never needs torch or the checkpoint.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import torch

from faceage import __version__
from faceage.data.prepared import PreparedData
from faceage.detect import ALIGNMENT_VERSION
from faceage.errors import FaceageError
from faceage.files import atomic_write_bytes
from faceage.models.transfer import fold_affine_layers
from faceage.onnxfile import ModelMetadata, open_session, set_metadata
from faceage.preprocessing import Preprocessing
from faceage.train.module import AgeModule, flip_averaged

if TYPE_CHECKING:
    from faceage.train.offset import AgeMapping, AgeOffset
    from faceage.train.quantize import KernelAgreement, QuantizationError


def _crop_span(preprocessing: Preprocessing, centre: float) -> tuple[int, int]:
    """(first pixel, pixels) of the aligned crop that ``preprocessing`` keeps along one axis (as its ``resize``)."""
    side = preprocessing.aligned_size
    keep = int(round(side * preprocessing.crop_fraction))
    start = (side - keep) // 2 if centre == 0.5 else min(max(int(round(side * centre - keep / 2)), 0), side - keep)
    return start, keep


def area_resampling(source: Preprocessing, target: Preprocessing, axis: str) -> np.ndarray:
    """The target-size × source-size matrix that makes the ``target`` input's rows (``axis`` "y") or columns ("x")
    from the ``source`` input's: each target pixel is the area average of the source pixels it covers, as OpenCV's
    INTER_AREA resizes. The target's crop must lie inside the source's, with the same normalisation."""
    same_values = np.allclose(source.mean + source.std, target.mean + target.std, rtol=0, atol=1e-3)
    if not same_values or source.aligned_size != target.aligned_size:
        raise FaceageError("members with another normalisation or aligned crop size cannot share one input")
    centre = (source.center_y, target.center_y) if axis == "y" else (0.5, 0.5)
    (s_start, s_keep), (t_start, t_keep) = _crop_span(source, centre[0]), _crop_span(target, centre[1])
    if t_start < s_start or t_start + t_keep > s_start + s_keep:
        raise FaceageError(f"a member's crop ({target.crop_fraction:.0%} of the face) reaches outside the first run's "
                           f"({source.crop_fraction:.0%}): give the run with the widest crop first")  # fmt: skip
    s_edges = s_start + np.arange(source.input_size + 1) * s_keep / source.input_size
    t_edges = t_start + np.arange(target.input_size + 1) * t_keep / target.input_size
    overlap = np.minimum(t_edges[1:, None], s_edges[None, 1:]) - np.maximum(t_edges[:-1, None], s_edges[None, :-1])
    weights = np.clip(overlap, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


class Resampled(torch.nn.Module):
    """A member network whose input is resampled in the graph from the shared input (two constant matrix products)."""

    def __init__(self, net: torch.nn.Module, source: Preprocessing, target: Preprocessing):
        super().__init__()
        self.net = net
        self.register_buffer("rows", torch.from_numpy(area_resampling(source, target, "y")))
        self.register_buffer("cols", torch.from_numpy(area_resampling(source, target, "x")).T.contiguous())

    def forward(self, x):
        return self.net(self.rows @ x @ self.cols)


class AveragedProbabilities(torch.nn.Module):
    """Probabilities of one or several trained modules (averaged, or weighted by ``weights``), with flip averaging
    for "ages" models (``flip``: None follows the modules' own setting; False halves the cost). Members whose input
    differs from the first's get it resampled in the graph (:class:`Resampled`)."""

    def __init__(self, modules: list[AgeModule], flip: bool | None = None, weights: list[float] | None = None):
        super().__init__()
        source = Preprocessing.from_dict(modules[0].hparams.preprocessing)
        nets = []
        for module in modules:
            net = fold_affine_layers(copy.deepcopy(module.net))
            target = Preprocessing.from_dict(module.hparams.preprocessing)
            nets.append(net if target == source else Resampled(net, source, target))
        self.nets = torch.nn.ModuleList(nets)
        self.weights = member_weights(weights, len(modules))
        first = modules[0]
        wanted = first.hparams.flip_tta if flip is None else flip
        self.flip = bool(wanted and first.predicts_ages)

    def forward(self, x):
        total = None
        for net, weight in zip(self.nets, self.weights, strict=True):
            probs = flip_averaged(net, x, self.flip) * weight
            total = probs if total is None else total + probs
        return total


def member_weights(weights: list[float] | None, members: int) -> list[float]:
    """Each member's share of the average (``weights`` scaled to sum to 1; equal shares without them)."""
    if weights is None:
        return [1.0 / members] * members
    if len(weights) != members or any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise FaceageError(f"give one weight of 0 or more per run ({members} runs), not all 0; got {list(weights)}")
    return [float(w) / sum(weights) for w in weights]


def load_modules(runs: list[Path]) -> list[AgeModule]:
    modules = [AgeModule.load_from_checkpoint(find_checkpoint(r), map_location="cpu").eval() for r in runs]
    first = modules[0].hparams
    source = Preprocessing.from_dict(first.preprocessing)
    for run, module in zip(runs, modules, strict=True):
        h = module.hparams
        if (h.bins, h.head) != (first.bins, first.head):
            raise FaceageError(f"{run} uses other bins or head than {runs[0]}; they cannot be averaged")
        target = Preprocessing.from_dict(h.preprocessing)
        if target != source:
            area_resampling(source, target, "y")  # refuses what cannot be resampled from the first run's input
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
                flip: bool | None = None, weights: list[float] | None = None) -> ModelMetadata:  # fmt: skip
    """Export the best checkpoint of one run (or the average of several); returns the metadata written."""
    runs = [Path(runs)] if isinstance(runs, str | Path) else [Path(r) for r in runs]
    if not runs:
        raise FaceageError("give at least one run folder to export")
    modules = load_modules(runs)
    module = modules[0]
    wrapper = AveragedProbabilities(modules, flip=flip, weights=weights).eval()
    size = int(module.hparams.preprocessing["input_size"])
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # sizes read as plain ints are meant to become constants (fixed input size)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        _export_graph(wrapper, size, buffer)
    model = onnx.load_from_string(buffer.getvalue())
    kinds = list(dict.fromkeys(m.hparams.model_name for m in modules))  # each architecture once, first run's first
    metadata = ModelMetadata(
        name=name or "+".join(kinds) + (f"-ensemble{len(runs)}" if len(runs) > 1 else ""),
        model="+".join(kinds),
        members=len(runs),
        version=__version__,
        head=module.head_kind,
        bins=module.hparams.bins,
        bin_ages=tuple(float(a) for a in module.hparams.bin_ages),
        preprocessing=dict(module.hparams.preprocessing),
        alignment=ALIGNMENT_VERSION,
        flip_averaged=wrapper.flip,
        # the splits the members learnt from: a model fit on train+val has no unseen validation faces
        fit_on="train+val" if any(m.hparams.get("fit_on") == "train+val" for m in modules) else "train",
        float16_weights=float16_weights,
    )
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


def parity(runs: Path | list[Path], onnx_path: Path, inputs: np.ndarray, flip: bool | None = None,
           weights: list[float] | None = None) -> float:  # fmt: skip
    """Largest absolute difference between the checkpoints (torch) and the exported file (ONNX Runtime)."""
    runs = [Path(runs)] if isinstance(runs, str | Path) else [Path(r) for r in runs]
    with torch.no_grad():
        wrapper = AveragedProbabilities(load_modules(runs), flip=flip, weights=weights)
        expected = wrapper(torch.from_numpy(inputs)).numpy()
    got = open_session(onnx_path, threads=torch.get_num_threads()).run(None, {"faces": inputs.astype(np.float32)})[0]
    return float(np.abs(expected - got).max())


@dataclass(frozen=True)
class ExportReport:
    metadata: dict  # as exported from the checkpoints (before int8 and the offset were added)
    parity: float  # largest difference to PyTorch on 8 random inputs
    quantization: QuantizationError | None  # with int8: how far it moved the estimates (graph as written vs float)
    kernels: KernelAgreement | None  # with int8: this machine's optimised run against the file computed as written
    correction: AgeOffset | AgeMapping | None  # with correction data: the offset or mapping measured and stored
    golden_faces: int  # faces whose reference answers the file stores (faceage.infer.golden)


def export_model(runs: list[Path], out: Path, *, name: str | None = None, float16_weights: bool = False,
                 flip: bool | None = None, int8_data: PreparedData | Path | None = None, int8_faces: int = 512,
                 correction_data: PreparedData | Path | None = None, mapping_strength: float | None = None,
                 mapping_from_age: float | None = None,
                 weights: list[float] | None = None) -> ExportReport:  # fmt: skip
    """``faceage export``: the checkpoints to ONNX, checked against PyTorch, then optionally given int8 weights
    (float arithmetic; checked on ``int8_faces`` validation faces of ``int8_data``) and the age correction measured
    on the val faces of ``correction_data``: an offset, or with ``mapping_strength`` a quantile mapping from
    ``mapping_from_age`` up (by default ``faceage.train.offset.MAPPING_FROM_AGE``). Last, the file's golden outputs
    are computed and stored (:mod:`faceage.infer.golden`). Everything happens in a temporary folder: ``out`` is
    written only once every check passed."""
    from faceage.infer.golden import store_golden
    from faceage.train.offset import MAPPING_FROM_AGE, apply_age_mapping, apply_age_offset, check_mapping_strength
    from faceage.train.quantize import (
        KERNEL_MEAN_LIMIT,
        KERNEL_P99_LIMIT,
        calibration_faces,
        kernel_agreement,
        quantization_error,
        quantize_int8,
    )

    if mapping_strength is not None and correction_data is None:
        raise FaceageError("an age mapping is fitted on validation faces: give --age-correction-data DATA_DIR too")
    if mapping_strength is not None:
        check_mapping_strength(mapping_strength)  # before any work
    if int8_data is not None and float16_weights:
        raise FaceageError("choose --int8 or --float16-weights, not both (int8 weights are smaller still)")
    opened: dict[str, PreparedData] = {}  # each prepared folder opened once, before any work
    int8_data, correction_data = (None if d is None else opened.setdefault(str(d), PreparedData.of(d))
                              for d in (int8_data, correction_data))  # fmt: skip
    quantization = kernels = correction = None
    with tempfile.TemporaryDirectory() as tmp:
        float_path, result = Path(tmp) / "float.onnx", Path(tmp) / "model.onnx"
        metadata = export_onnx(runs, float_path, name=name, float16_weights=float16_weights, flip=flip, weights=weights)
        size = metadata.input_preprocessing.input_size
        inputs = np.random.default_rng(0).normal(0, 0.5, (8, 3, size, size)).astype(np.float32)
        difference = parity(runs, float_path, inputs, flip=flip, weights=weights)
        limit = 5e-3 if float16_weights else 1e-4  # float16 weights round at about 5e-4 relative
        if difference > limit:
            raise FaceageError(f"the exported model differs from its checkpoint by {difference:.2e}, over {limit}")
        if int8_data is not None:
            preprocessing = metadata.input_preprocessing
            faces = calibration_faces(int8_data, preprocessing, {"val": int8_faces})
            quantize_int8(float_path, result)
            quantization = quantization_error(float_path, result, metadata, faces["val"])
            if quantization.mean_age_change > 1.0 or abs(quantization.mean_signed_change) > 0.5:
                raise FaceageError(
                    f"int8 moves estimates too far from the float model's ({quantization.mean_age_change:.2f} years on "
                    f"average, {quantization.mean_signed_change:+.2f} on balance; the limits are 1 and 0.5): ship "
                    "the float model"
                )
            kernels = kernel_agreement(result, metadata, faces["val"])
            if not kernels.agrees:
                raise FaceageError(
                    f"this machine's ONNX Runtime moves the estimates of the int8 file by {kernels.mean_change:.3f} "
                    f"years on average from the same file computed as written (99% within {kernels.p99_change:.3f}; "
                    f"the limits are {KERNEL_MEAN_LIMIT} and {KERNEL_P99_LIMIT}): {kernels.cause()}"
                )
        else:
            float_path.rename(result)
        if correction_data is not None and mapping_strength is not None:
            from_age = MAPPING_FROM_AGE if mapping_from_age is None else mapping_from_age
            correction = apply_age_mapping(result, correction_data, mapping_strength, from_age)
        elif correction_data is not None:
            correction = apply_age_offset(result, correction_data)
        golden = store_golden(result)
        atomic_write_bytes(Path(out), result.read_bytes())
    golden_faces = sum(len(image["faces"]) for image in golden["images"])
    return ExportReport(metadata, difference, quantization, kernels, correction, golden_faces)
