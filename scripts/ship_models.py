"""Export the package's two shipped models from training runs, calibrate them, then measure them.

    .venv/bin/python scripts/ship_models.py --runs runs/ladder/transfer-ema runs/ladder/transfer-ema-seed1 \\
        runs/ladder/transfer-ema-seed2 runs/ladder/transfer-ema-seed3 --data data/utk

- ``faceage-default.onnx``: the average of all the runs, int8, no flip averaging.
- ``faceage-fast.onnx``: the run whose int8, no-flip export has the lowest MAE on the validation split: one pass of
  the network per face.

Both go through `faceage export --int8 --age-offset-data` (parity with PyTorch for the float graph, then int8
calibrated on training faces and compared with the float model on validation faces, then the age offset that lowers
the absolute error measured on validation faces, faceage.train.offset), get their screening defaults from the
validation split
(`faceage calibrate`), and are measured by benchmarks/evaluation.py, which evaluates the *shipped files* and writes
their model cards, the report and the README's evaluation section.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.weights import DEFAULT_MODEL, FAST_MODEL

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="training runs of one recipe (seeds)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--name", default="faceage-utkface-transfer-ema")
    args = parser.parse_args()

    faceage = str(Path(sys.executable).parent / "faceage")
    common = ["--no-flip", "--int8", "--calibration-data", str(args.data), "--age-offset-data", str(args.data)]

    def export(runs: list[Path], name: str, out: Path) -> None:
        subprocess.run([faceage, "export", *map(str, runs), *common, "--name", name, "--out", str(out)], check=True)

    with tempfile.TemporaryDirectory() as tmp:
        val_mae = {}
        for i, run in enumerate(args.runs):
            candidate = Path(tmp) / f"candidate-{i}.onnx"
            export([run], f"{args.name}-single-int8", candidate)
            samples = samples_from_data_dir(args.data, "val")
            result = evaluate(candidate, samples, Path(tmp) / f"val-{i}", n_resamples=10)
            val_mae[run] = result.metrics["headline"]["mae"]
        print("val MAE of each run, int8 without flip, with its age offset: "
              + ", ".join(f"{r}: {m:.3f}" for r, m in val_mae.items()))  # fmt: skip
        best = min(args.runs, key=val_mae.get)
        shutil.copyfile(Path(tmp) / f"candidate-{args.runs.index(best)}.onnx", FAST_MODEL)
    export(args.runs, f"{args.name}-ensemble{len(args.runs)}-int8", DEFAULT_MODEL)
    for path in (DEFAULT_MODEL, FAST_MODEL):
        subprocess.run([faceage, "calibrate", str(path), "--data", str(args.data), "--min-age", "18", "--min-age",
                        "21", "--max-minor-pass", "0.01"], check=True)  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "evaluation.py"), "--data", str(args.data)],
                   check=True)  # fmt: skip


if __name__ == "__main__":
    main()
