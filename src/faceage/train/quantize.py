"""8-bit models: ``faceage export RUN --int8 --calibration-data DATA`` (ONNX Runtime static quantisation).

The convolutions, where the time goes, become int8: weights with one scale per output channel, input activations
uint8 with ranges measured on training faces of DATA (min/max over ``calibration_faces`` faces). The head and the
softmax stay float: quantising the probabilities to 1/255 steps drops the thin tail of old ages and pulled every
estimate down by 0.7 years when we tried it.

**The same answer on every CPU.** ONNX Runtime's x86 int8 kernels for CPUs without 8-bit dot-product instructions
(AVX2 and AVX-512 without VNNI) multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds each pair of
products into a *saturating* int16: with weights up to ±127 a pair can reach 2·255·127 = 64,770 and is clipped to
32,767. Files whose weights use the full int8 range therefore give other estimates on such CPUs (2-5 years per face
for our models) than on CPUs with VNNI or on ARM, where the sums are exact. Weights here are quantised to 7 bits
(``reduce_range``: |w| ≤ :data:`WEIGHT_LIMIT` = 64, so a pair stays within 2·255·64 = 32,640), the remedy ONNX
Runtime's quantisation documentation gives; every kernel then computes the same integers. Export checks it twice
against references that do not depend on the CPU: :func:`quantization_error` compares the int8 graph computed as
written (graph optimisations off, :func:`faceage.onnxfile.open_session` with ``reference=True``) with the float model,
and :func:`kernel_agreement` compares this machine's fused int8 kernels with that reference and refuses the file,
naming the cause, when they disagree.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from faceage.data.manifest import atomic_write_bytes
from faceage.errors import FaceageError
from faceage.infer.golden import mismatch_cause
from faceage.onnxfile import WEIGHT_LIMIT, open_session, probabilities, read_metadata, set_metadata, weight_peak
from faceage.preprocessing import Preprocessing

# this machine's fused kernels against the graph as written, in years per face: a file is refused beyond these
KERNEL_MEAN_LIMIT = 0.05
KERNEL_P99_LIMIT = 0.3


@dataclass(frozen=True)
class QuantizationError:
    faces: int
    mean_age_change: float  # mean |age(int8) - age(float)|, years
    mean_signed_change: float  # mean age(int8) - age(float): a systematic shift
    max_age_change: float
    same_top_class: float  # share of faces whose most probable class (age or bin) is unchanged


def calibration_faces(data_dir: Path, preprocessing: Preprocessing, counts: dict[str, int],
                      seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """For each split in ``counts``, that many of its faces in a prepared folder (drawn with ``seed``) as model inputs
    (N×3×S×S float32); the cached face arrays are read once."""
    from faceage.train.data import load_split_arrays

    arrays = load_split_arrays(Path(data_dir), preprocessing, show_progress=False)
    out = {}
    for split, count in counts.items():
        images = arrays[split].images
        if not len(images):
            raise FaceageError(f"{data_dir}: the {split} split has no faces to calibrate the int8 model on")
        pick = np.random.default_rng(seed).choice(len(images), min(count, len(images)), replace=False)
        out[split] = preprocessing.normalize(images[np.sort(pick)])
    return out


def quantize_int8(float_model: Path, out: Path, calibration: np.ndarray, batch: int = 32) -> None:
    """Write an int8 (QDQ) copy of ``float_model`` to ``out``, with activation ranges from ``calibration`` inputs and
    7-bit weights (|w| ≤ 64: exact on every CPU); the faceage metadata is carried over with ``"int8": true``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": calibration[i : i + batch]} for i in range(0, len(calibration), batch)])

        def get_next(self):
            return next(self.batches, None)

    metadata = read_metadata(float_model)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_model), str(prepared))
        quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        op_types_to_quantize=["Conv"])  # fmt: skip
        model = onnx.load(str(quantized))
    if (peak := weight_peak(model)) > WEIGHT_LIMIT:  # the quantiser's contract; a change of its defaults shows here
        raise FaceageError(f"the int8 weights reach ±{peak}, over ±{WEIGHT_LIMIT}: they would saturate on CPUs "
                           "without VNNI")  # fmt: skip
    set_metadata(model, {**metadata, "int8": True, "int8_weight_limit": WEIGHT_LIMIT, "float16_weights": False})
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(out), model.SerializeToString())


def expected_ages(probs: np.ndarray, metadata: dict) -> np.ndarray:
    """The expected age of each row of a model's output (ages 0-100, or the bins' typical ages)."""
    values = np.arange(probs.shape[1]) if metadata["head"] == "ages" else np.asarray(metadata["bin_ages"])
    return probs @ values


def quantization_error(float_model: Path, int8_model: Path, metadata: dict, inputs: np.ndarray) -> QuantizationError:
    """How far the int8 model's estimates move from the float model's (faceage ``metadata``) on ``inputs``
    (held-out faces); the int8 model is computed as written, so the figures do not depend on this CPU."""
    results = []
    for session in (open_session(float_model, threads=2), open_session(int8_model, threads=2, reference=True)):
        probs = probabilities(session, inputs)
        results.append((expected_ages(probs, metadata), probs.argmax(axis=1)))
    (float_age, float_top), (int8_age, int8_top) = results
    change = np.abs(int8_age - float_age)
    same_top = float((int8_top == float_top).mean())
    shift = float((int8_age - float_age).mean())
    return QuantizationError(len(inputs), float(change.mean()), shift, float(change.max()), same_top)


@dataclass(frozen=True)
class KernelAgreement:
    """This machine's int8 kernels (graph optimised, as users run it) against the same file computed as written."""

    faces: int
    mean_change: float  # mean |age(here) - age(as written)|, years
    p99_change: float
    max_change: float
    weight_peak: int  # largest |int8 weight| in the file

    @property
    def agrees(self) -> bool:
        return self.mean_change <= KERNEL_MEAN_LIMIT and self.p99_change <= KERNEL_P99_LIMIT

    def cause(self) -> str:
        """Why they disagree, as far as it can be told from here."""
        return mismatch_cause(self.weight_peak)


def kernel_agreement(int8_model: Path, metadata: dict, inputs: np.ndarray) -> KernelAgreement:
    """How far this machine's fused int8 kernels move the estimates of ``int8_model`` from the graph computed as
    written, on ``inputs`` (faces)."""
    here, written = (expected_ages(probabilities(open_session(int8_model, threads=2, reference=reference), inputs),
                                   metadata) for reference in (False, True))  # fmt: skip
    change = np.abs(here - written)
    return KernelAgreement(len(inputs), float(change.mean()), float(np.quantile(change, 0.99)), float(change.max()),
                           weight_peak(onnx.load(str(int8_model))))  # fmt: skip


def narrow_int8_weights(model: onnx.ModelProto, limit: int = WEIGHT_LIMIT) -> int:
    """Rescale, in place, each output channel of the int8 weights of a QDQ model whose values exceed ±``limit`` so
    that they fit (the channel's scale grows by the same factor; the int32 biases, whose scale is the input's times
    the weight's, are rescaled with it). For files written before export kept weights within ±64; returns the number
    of weight tensors changed. Activations and their ranges are untouched."""
    initializers = {init.name: init for init in model.graph.initializer}
    dequantize = [node for node in model.graph.node if node.op_type == "DequantizeLinear"]
    weight_of_bias = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 2:
            weight_of_bias[node.input[2]] = node.input[1]
    by_output = {node.output[0]: node for node in dequantize}
    factors, changed = {}, 0
    for node in dequantize:
        values = initializers.get(node.input[0])
        if values is None or values.data_type != onnx.TensorProto.INT8:
            continue
        weights = numpy_helper.to_array(values).astype(np.int32)
        if len(node.input) > 2 and np.any(numpy_helper.to_array(initializers[node.input[2]])):
            raise FaceageError(f"{values.name}: int8 weights with a zero point other than 0 cannot be narrowed")
        scale = initializers[node.input[1]]
        per_tensor = numpy_helper.to_array(scale).size == 1
        peak = np.abs(weights.reshape(1 if per_tensor else len(weights), -1)).max(axis=1).astype(np.float64)
        factor = np.where(peak > limit, peak / limit, 1.0)
        if np.all(factor == 1.0):
            continue
        shape = (-1,) + (1,) * (weights.ndim - 1)
        narrowed = np.clip(np.round(weights / factor.reshape(shape)), -limit, limit).astype(np.int8)
        values.CopyFrom(numpy_helper.from_array(narrowed, values.name))
        new_scale = numpy_helper.to_array(scale) * (factor[0] if per_tensor else factor)
        scale.CopyFrom(numpy_helper.from_array(new_scale.astype(np.float32), scale.name))
        factors[node.output[0]] = factor
        changed += 1
    for bias_output, weight_output in weight_of_bias.items():
        node = by_output.get(bias_output)
        if weight_output not in factors or node is None or node.input[0] not in initializers:
            continue
        factor, values, scale = factors[weight_output], initializers[node.input[0]], initializers[node.input[1]]
        bias = np.round(numpy_helper.to_array(values).astype(np.float64) / factor).astype(np.int32)
        values.CopyFrom(numpy_helper.from_array(bias, values.name))
        scale.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(scale) * factor).astype(np.float32), scale.name))
    return changed
