"""Make the package's two shipped models, calibrate them, store their golden outputs, then measure them.

    .venv/bin/python scripts/ship_models.py --runs runs/ladder/transfer-ema runs/ladder/transfer-ema-seed1 \\
        runs/ladder/transfer-ema-seed2 runs/ladder/transfer-ema-seed3 --data data/utk
    .venv/bin/python scripts/ship_models.py --weights-only-shipped --data data/utk

- ``faceage-default.onnx``: the average of all the runs, int8, no flip averaging.
- ``faceage-fast.onnx``: the run whose int8, no-flip export has the lowest MAE on the validation split: one pass of
  the network per face.

With ``--runs`` both go through `faceage export --int8 --age-correction-data` (parity with PyTorch for the float graph,
then int8 weights compared with the float model on validation faces, this CPU's run compared with the graph as
written, then the age offset that lowers the absolute error measured on validation faces, faceage.train.offset).
``--weights-only-shipped`` instead rewrites the shipped files of an earlier faceage, which computed in int8 and gave
other answers on other CPUs, as the same int8 weights with float arithmetic
(faceage.train.quantize.weights_only_from_qdq; the checkpoints behind them are not kept), and measures their age
offset again. Then either way: screening defaults from the validation split (`faceage calibrate`), golden outputs on
scikit-image's photos and on ``--photos`` (faceage.infer.golden), and benchmarks/evaluation.py, which evaluates the
*shipped files* and writes their model cards, the report and the README's evaluation section.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.files import atomic_write_bytes
from faceage.infer.golden import store_golden
from faceage.onnxfile import read_metadata, update_metadata
from faceage.train.offset import apply_age_offset
from faceage.train.quantize import weights_only_from_qdq
from faceage.weights import DEFAULT_MODEL, FAST_MODEL

ROOT = Path(__file__).resolve().parents[1]


def export_from_runs(runs: list[Path], data: Path, name: str) -> None:
    faceage = str(Path(sys.executable).parent / "faceage")
    common = ["--no-flip", "--int8", "--calibration-data", str(data), "--age-correction-data", str(data)]

    def export(members: list[Path], model_name: str, out: Path) -> None:
        subprocess.run([faceage, "export", *map(str, members), *common, "--name", model_name, "--out", str(out)],
                       check=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        val_mae = {}
        for i, run in enumerate(runs):
            candidate = Path(tmp) / f"candidate-{i}.onnx"
            export([run], f"{name}-single-int8", candidate)
            result = evaluate(candidate, samples_from_data_dir(data, "val"), Path(tmp) / f"val-{i}", n_resamples=10)
            val_mae[run] = result.metrics["headline"]["mae"]
        print("val MAE of each run, int8 without flip, with its age offset: "
              + ", ".join(f"{r}: {m:.3f}" for r, m in val_mae.items()))  # fmt: skip
        best = min(runs, key=val_mae.get)
        shutil.copyfile(Path(tmp) / f"candidate-{runs.index(best)}.onnx", FAST_MODEL)
    export(runs, f"{name}-ensemble{len(runs)}-int8", DEFAULT_MODEL)


def weights_only_shipped(data: Path) -> None:
    for path in (DEFAULT_MODEL, FAST_MODEL):
        before = read_metadata(path).offset_years
        model = onnx.load(str(path))
        removed = weights_only_from_qdq(model)
        onnx.checker.check_model(model)
        atomic_write_bytes(path, model.SerializeToString())
        update_metadata(path, int8_arithmetic=False)
        offset = apply_age_offset(path, data)
        print(f"{path.name}: {removed} quantised activations back to float; age offset {offset.years:+.3f} years "
              f"(was {before:+.3f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", type=Path, nargs="+", help="training runs of one recipe (seeds)")
    source.add_argument("--weights-only-shipped", action="store_true",
                        help="rewrite the shipped files as int8 weights with float arithmetic")  # fmt: skip
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "photos",
                        help="photos whose answers are stored as golden outputs too")  # fmt: skip
    parser.add_argument("--name", default="faceage-utkface-transfer-ema")
    args = parser.parse_args()

    if args.runs:
        export_from_runs(args.runs, args.data, args.name)
    else:
        weights_only_shipped(args.data)
    faceage = str(Path(sys.executable).parent / "faceage")
    for path in (DEFAULT_MODEL, FAST_MODEL):
        golden = store_golden(path, args.photos if args.photos.is_dir() else None)
        print(f"{path.name}: golden outputs for {sum(len(i['faces']) for i in golden['images'])} faces")
        subprocess.run([faceage, "calibrate", str(path), "--data", str(args.data), "--min-age", "18", "--min-age",
                        "21", "--max-minor-pass", "0.01"], check=True)  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "evaluation.py"), "--data", str(args.data)],
                   check=True)  # fmt: skip


if __name__ == "__main__":
    main()
