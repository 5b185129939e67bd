"""Int8 weights: ``faceage export RUN --int8 --calibration-data DATA``.

Each convolution's weights are stored as int8, one scale per output channel (symmetric, ±127), and turned back into
float32 by a ``Cast`` and a ``Mul`` that ONNX Runtime folds into constants when it loads the file: the network then
computes in float32. The file is a quarter of the float file's size, runs at the float model's speed, and gives the
same answer on every CPU (at most 0.044 years per face end to end between an AVX-512 VNNI machine and an emulated
AVX2-only one, README "The same answer on every CPU"). The val faces of DATA measure how far the int8
weights move the estimates from the float model's (:func:`quantization_error`); export refuses a file that moves them
by more than a year on average or half a year on balance.

Why not int8 *arithmetic* (activations quantised too: ONNX Runtime's static QDQ quantisation, which faceage shipped
until its shipped files were rewritten), measured on the shipped default model (``benchmarks/formats.py``):

1. ONNX Runtime's x86 int8 kernels for CPUs without 8-bit dot-product instructions (AVX2, AVX-512 without VNNI)
   multiply uint8 activations by int8 weights with ``vpmaddubsw``, which adds each pair of products into a
   *saturating* int16; with weights up to ±127 a pair reaches 2·255·127 = 64,770 and is clipped: estimates moved by
   3.4 years per face on average (up to 8.9) on such a CPU. Weights within ±64
   (:data:`faceage.onnxfile.WEIGHT_LIMIT`) make every kernel compute the same integers.
2. Even then the answer is not the same everywhere: a quantised network's output jumps when its input changes by one
   grey level in a few pixels, and MTCNN's float arithmetic differs slightly between CPUs (its landmarks by
   thousandths of a pixel, enough to change a few crop pixels by one level): end to end, estimates moved by up to
   0.45 years per face between the two machines. In float they move by at most 0.044 (``benchmarks/formats.py``).

:func:`weights_only_from_qdq` turns such a file (the shipped models of earlier versions) into this format without
the checkpoints: the same int8 weights, float arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from faceage.errors import FaceageError
from faceage.files import atomic_write_bytes
from faceage.infer.golden import mismatch_cause

if TYPE_CHECKING:
    from faceage.data.prepared import PreparedData

from faceage.onnxfile import ModelMetadata, open_session, probabilities, read_metadata, set_metadata
from faceage.preprocessing import Preprocessing

# this machine's optimised run against the graph as written, in years per face: a file is refused beyond these (float
# arithmetic differs by rounding only, about 1e-5 years)
KERNEL_MEAN_LIMIT = 0.01
KERNEL_P99_LIMIT = 0.05


@dataclass(frozen=True)
class QuantizationError:
    faces: int
    mean_age_change: float  # mean |age(int8) - age(float)|, years
    mean_signed_change: float  # mean age(int8) - age(float): a systematic shift
    max_age_change: float
    same_top_class: float  # share of faces whose most probable class (age or bin) is unchanged


def calibration_faces(data_dir: PreparedData | Path, preprocessing: Preprocessing, counts: dict[str, int],
                      seed: int = 0) -> dict[str, np.ndarray]:  # fmt: skip
    """For each split in ``counts``, that many of its faces in a prepared folder (drawn with ``seed``) as model inputs
    (N×3×S×S float32); the cached face arrays are read once."""
    from faceage.train.data import load_split_arrays

    arrays = load_split_arrays(data_dir, preprocessing, show_progress=False)
    out = {}
    for split, count in counts.items():
        images = arrays[split].images
        if not len(images):
            raise FaceageError(f"{data_dir}: the {split} split has no faces to check the int8 model on")
        pick = np.random.default_rng(seed).choice(len(images), min(count, len(images)), replace=False)
        out[split] = preprocessing.normalize(images[np.sort(pick)])
    return out


def _int8_weight(name: str, weights: np.ndarray, nodes: list, initializers: list, scales: np.ndarray | None = None):
    """Store ``weights`` (float, output channels first) as int8 with per-channel ``scales`` (computed if not given)
    under ``name``, and append the Cast and Mul that turn them back into float32 (folded when a session loads)."""
    shape = (-1,) + (1,) * (weights.ndim - 1)
    if scales is None:
        peak = np.abs(weights.reshape(len(weights), -1)).max(axis=1)
        scales = np.where(peak > 0, peak / 127.0, 1.0)
        weights = np.clip(np.round(weights / scales.reshape(shape)), -127, 127)
    initializers.append(numpy_helper.from_array(weights.astype(np.int8), f"{name}_int8"))
    initializers.append(numpy_helper.from_array(np.asarray(scales, np.float32).reshape(shape), f"{name}_scale"))
    nodes.append(onnx.helper.make_node("Cast", [f"{name}_int8"], [f"{name}_float"], to=onnx.TensorProto.FLOAT))
    nodes.append(onnx.helper.make_node("Mul", [f"{name}_float", f"{name}_scale"], [name]))


def _replace_graph(model: onnx.ModelProto, nodes: list, initializers: list) -> None:
    graph = model.graph
    used = {name for node in nodes for name in node.input}
    replaced = {init.name for init in initializers} | {name for node in nodes for name in node.output}
    kept = [init for init in graph.initializer if init.name in used and init.name not in replaced]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + [init for init in initializers if init.name in used])


def quantize_weights(model: onnx.ModelProto) -> int:
    """Store the weights of every convolution of a float model as int8 (in place); returns how many."""
    initializers = {init.name: init for init in model.graph.initializer}
    nodes, added, done = [], [], set()
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "Conv" else None
        if weight is not None and weight.data_type == onnx.TensorProto.FLOAT and weight.name not in done:
            _int8_weight(weight.name, numpy_helper.to_array(weight).astype(np.float64), nodes, added)
            done.add(weight.name)  # a network run twice (flip averaging) shares its weights
        nodes.append(node)
    _replace_graph(model, nodes, added)
    return len(done)


def weights_only_from_qdq(model: onnx.ModelProto) -> int:
    """Turn a statically quantised (QDQ) model into int8 weights with float arithmetic, in place: each int8 weight
    keeps its values and scales (as Cast and Mul), int32 biases become the float values they stand for, and every
    quantise/dequantise pair on activations goes. Returns the number of activation pairs removed (0: nothing to do)."""
    initializers = {init.name: init for init in model.graph.initializer}
    producer = {output: node for node in model.graph.node for output in node.output}
    rewired, nodes, added, removed = {}, [], [], 0
    for node in model.graph.node:
        stored = initializers.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if stored is not None:
            values = numpy_helper.to_array(stored)
            scales = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
            zero = numpy_helper.to_array(initializers[node.input[2]]) if len(node.input) > 2 else np.zeros(1)
            if np.any(zero):
                raise FaceageError(f"{stored.name}: quantised with a zero point other than 0; export it again")
            if stored.data_type == onnx.TensorProto.INT8 and values.ndim > 1:
                _int8_weight(node.output[0], values.astype(np.int32), nodes, added, scales.reshape(-1))
            else:  # a bias (int32) or a small constant: its float value
                shape = (-1,) + (1,) * (values.ndim - 1) if scales.size > 1 else ()
                added.append(numpy_helper.from_array((values * scales.reshape(shape)).astype(np.float32),
                                                     node.output[0]))  # fmt: skip
        elif node.op_type == "DequantizeLinear" and getattr(producer.get(node.input[0]), "op_type", "") == (
            "QuantizeLinear"
        ):
            rewired[node.output[0]] = producer[node.input[0]].input[0]
            removed += 1
        elif node.op_type != "QuantizeLinear":
            nodes.append(node)
    for node in nodes:
        for i, name in enumerate(node.input):
            while name in rewired:
                name = rewired[name]
            node.input[i] = name
    _replace_graph(model, nodes, added)
    return removed


def quantize_int8(float_model: Path, out: Path) -> None:
    """Write a copy of ``float_model`` to ``out`` whose convolution weights are int8 (float arithmetic); the faceage
    metadata is carried over with ``"int8": true``."""
    metadata = read_metadata(float_model)
    model = onnx.load(str(float_model))
    quantize_weights(model)
    set_metadata(model, replace(metadata, int8=True, int8_arithmetic=False, float16_weights=False))
    onnx.checker.check_model(model)
    atomic_write_bytes(Path(out), model.SerializeToString())


def expected_ages(probs: np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """The expected age of each row of a model's output (ages 0-100, or the bins' typical ages)."""
    from faceage.bins import AgeBins
    from faceage.distribution import head_estimates

    return head_estimates(probs, AgeBins.parse(metadata.bins), predicts_ages=metadata.predicts_ages,
                          bin_ages=metadata.bin_ages).ages  # fmt: skip


def quantization_error(
    float_model: Path, int8_model: Path, metadata: ModelMetadata, inputs: np.ndarray
) -> QuantizationError:
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
    """This machine's run of an int8 file (graph optimised, as users run it) against the same file computed as
    written: float rounding only for int8 weights; a file that quantises activations can disagree (see above)."""

    faces: int
    mean_change: float  # mean |age(here) - age(as written)|, years
    p99_change: float
    max_change: float
    path: Path

    @property
    def agrees(self) -> bool:
        return self.mean_change <= KERNEL_MEAN_LIMIT and self.p99_change <= KERNEL_P99_LIMIT

    def cause(self) -> str:
        """Why they disagree, as far as it can be told from here."""
        return mismatch_cause(self.path)


def kernel_agreement(int8_model: Path, metadata: ModelMetadata, inputs: np.ndarray) -> KernelAgreement:
    """How far this machine's optimised run moves the estimates of ``int8_model`` from the graph computed as written,
    on ``inputs`` (faces)."""
    here, written = (expected_ages(probabilities(open_session(int8_model, threads=2, reference=reference), inputs),
                                   metadata) for reference in (False, True))  # fmt: skip
    change = np.abs(here - written)
    return KernelAgreement(len(inputs), float(change.mean()), float(np.quantile(change, 0.99)), float(change.max()),
                           Path(int8_model))  # fmt: skip
