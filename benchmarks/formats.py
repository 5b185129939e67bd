"""Why the shipped models store int8 weights but compute in float: four formats of the same network, measured.

    .venv/bin/python benchmarks/formats.py [--data data/utk] [--model default] [--emulate EPYC-Rome]

From the shipped file (int8 weights, float arithmetic) it derives, without the checkpoints:
- float32 weights (the int8 weights turned back into float32 in the file);
- int8 arithmetic as faceage shipped before (ONNX Runtime static quantisation: uint8 activations calibrated on 512
  training faces, int8 weights per channel up to ±127);
- the same with weights within ±64 (``reduce_range``), the remedy for the saturating int16 sums of x86 CPUs without
  VNNI.
For each it measures the test split's five-bin accuracy and MAE on the stored crops (each with its own age offset,
the median error on the val split), the age network's time per face on this CPU (1 thread, median of 30 after
warm-up) and the file size; then, when qemu-user is installed, how far the answers move end to end (MTCNN, alignment,
age model: the 26 faces of the golden images) between this CPU and an emulated CPU with AVX2 only (``--emulate``, a
qemu CPU model; the emulated run only computes answers, its speed is not measured). Writes
benchmarks/results/formats.md and the README's section.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

import readme
from faceage.bins import AgeBins
from faceage.infer.golden import compute_golden
from faceage.onnxfile import open_session, probabilities, read_metadata, set_metadata
from faceage.preprocessing import Preprocessing
from faceage.train.data import load_split_arrays
from faceage.train.quantize import calibration_faces
from faceage.weights import model_path
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "photos"


def float_weights(shipped: Path, out: Path) -> None:
    """The shipped file with its int8 weights (Cast, Mul) replaced by the float32 values they stand for."""
    model = onnx.load(str(shipped))
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    casts = {node.output[0]: node.input[0] for node in model.graph.node if node.op_type == "Cast"}
    nodes, folded = [], []
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0] in initializers:
            continue
        if node.op_type == "Mul" and node.input[0] in casts:
            weights = initializers[casts[node.input[0]]].astype(np.float32) * initializers[node.input[1]]
            folded.append(numpy_helper.from_array(weights.astype(np.float32), node.output[0]))
            continue
        nodes.append(node)
    used = {name for node in nodes for name in node.input}
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept + folded)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def int8_arithmetic(float_model: Path, out: Path, calibration: np.ndarray, reduce_range: bool) -> None:
    """ONNX Runtime static quantisation as faceage's export did it before (convolutions only, per channel)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": calibration[i : i + 32]} for i in range(0, len(calibration), 32)])

        def get_next(self):
            return next(self.batches, None)

    metadata = read_metadata(float_model)
    quantize_static(str(float_model), str(out), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=reduce_range,
                    op_types_to_quantize=["Conv"])  # fmt: skip
    model = onnx.load(str(out))
    set_metadata(model, replace(metadata, int8_arithmetic=True))
    onnx.save(model, str(out))


def accuracy(path: Path, arrays: dict, preprocessing: Preprocessing, bins: AgeBins) -> tuple[float, float, float]:
    session = open_session(path, threads=2)
    ages = {split: probabilities(session, arrays[split].images, prepare=preprocessing.normalize) @ np.arange(101)
            for split in ("val", "test")}  # fmt: skip
    offset = float(np.median(arrays["val"].ages - ages["val"]))
    test = np.maximum(ages["test"] + offset, 0.0)
    truth = arrays["test"].ages
    val_mae = float(np.abs(np.maximum(ages["val"] + offset, 0) - arrays["val"].ages).mean())
    return val_mae, float(np.abs(test - truth).mean()), float((bins.index(test) == bins.index(truth)).mean())


def network_ms(path: Path, size: int) -> tuple[float, float]:
    session = open_session(path, threads=1)
    x = np.random.default_rng(0).normal(0, 0.5, (32, 3, size, size)).astype(np.float32)
    out = []
    for batch in (1, 32):
        for _ in range(5):
            session.run(None, {"faces": x[:batch]})
        times = []
        for _ in range(30):
            start = time.perf_counter()
            session.run(None, {"faces": x[:batch]})
            times.append((time.perf_counter() - start) * 1000 / batch)
        out.append(statistics.median(times))
    return out[0], out[1]


def answers(paths: list[Path], photos: Path | None) -> dict:
    """End-to-end ages of every golden face for each file, as this CPU computes them."""
    return {str(p): [face["age"] for image in compute_golden(p, photos, reference=False)["images"]
                     for face in image["faces"]] for p in paths}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--model", default="default")
    parser.add_argument("--emulate", default="EPYC-Rome", help="qemu CPU model with AVX2 and no AVX-512 or VNNI")
    parser.add_argument("--answers", nargs="+", type=Path, help=argparse.SUPPRESS)  # the emulated child's job
    parser.add_argument("--answers-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    photos = PHOTOS if PHOTOS.is_dir() else None
    if args.answers:
        args.answers_out.write_text(json.dumps(answers(args.answers, photos)))
        return

    shipped = model_path(args.model)
    metadata = read_metadata(shipped)
    preprocessing = metadata.input_preprocessing
    bins = AgeBins.parse(metadata.bins)
    arrays = load_split_arrays(args.data, preprocessing, show_progress=False)
    qemu = shutil.which("qemu-x86_64")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = {"float32 weights, float arithmetic": tmp / "float.onnx"}
        float_weights(shipped, files["float32 weights, float arithmetic"])
        calibration = calibration_faces(args.data, preprocessing, {"train": 512})["train"]
        for label, reduce_range in (("int8 arithmetic, weights up to ±127 (shipped before)", False),
                                    ("int8 arithmetic, weights within ±64", True)):  # fmt: skip
            files[label] = tmp / f"int8-{int(reduce_range)}.onnx"
            int8_arithmetic(files["float32 weights, float arithmetic"], files[label], calibration, reduce_range)
        files["**int8 weights, float arithmetic (shipped)**"] = shipped
        here = answers(list(files.values()), photos)
        emulated = None
        if qemu:
            out = tmp / "emulated.json"
            command = [qemu, "-cpu", args.emulate, sys.executable, __file__, "--answers", *map(str, files.values()),
                       "--answers-out", str(out)]  # fmt: skip
            subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
            emulated = json.loads(out.read_text())
        rows = []
        for label, path in files.items():
            val_mae, test_mae, test_acc = accuracy(path, arrays, preprocessing, bins)
            one, batch = network_ms(path, preprocessing.input_size)
            if emulated is not None:
                change = np.abs(np.asarray(here[str(path)]) - np.asarray(emulated[str(path)]))
                moved = f"{change.max():.3f} (mean {change.mean():.3f}; {int((change > 0.2).sum())} over 0.2)"
            else:
                moved = "- (qemu-user not installed)"
            rows.append(f"| {label} | {path.stat().st_size / 1e6:.1f} MB | {val_mae:.3f} | {test_mae:.3f} | "
                        f"{test_acc:.1%} | {one:.2f} / {batch:.2f} | {moved} |")  # fmt: skip
    faces = len(next(iter(here.values())))
    text = (
        f"`python benchmarks/formats.py`: the shipped `{args.model}` model ({metadata.name}) in four formats, on "
        f"{readme.machine(threads=1)}; accuracy on the stored crops with each format's own age offset (median val "
        f"error); answers end to end on the {faces} faces of the golden images, this CPU against qemu's "
        f"`{args.emulate}` (AVX2, no AVX-512, no VNNI; emulated, so only its answers count, not its speed):\n\n"
        "| format | file | val MAE | test MAE | test five-bin acc | age network ms per face, batch 1 / 32 | "
        "largest change between the two CPUs, years |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    publish(text, "formats.md", "formats")


if __name__ == "__main__":
    main()
