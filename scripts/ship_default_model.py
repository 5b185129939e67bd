"""Export the chosen runs as the package's default model (then measure it and write its card and report).

    .venv/bin/python scripts/ship_default_model.py --no-flip \\
        --runs runs/ladder/transfer-ema runs/ladder/transfer-ema-seed1 runs/ladder/transfer-ema-seed2 --data data/utk

Writes src/faceage/weights/faceage-default.onnx (float16 weights, so three members fit in the 20 MB budget), then
calibrates its screening defaults on the validation split (`faceage calibrate default`) and runs
benchmarks/evaluation.py, which measures the *shipped file* with `faceage evaluate` and writes the model card,
the report and the README's evaluation section from those measurements.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from faceage.infer.estimator import DEFAULT_MODEL
from faceage.train.export import export_onnx

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--name", default="faceage-utkface-transfer-ema-ensemble")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average each face with its mirror image (default: as trained)")  # fmt: skip
    args = parser.parse_args()

    DEFAULT_MODEL.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(args.runs, DEFAULT_MODEL, name=args.name, float16_weights=True, flip=args.flip)
    print(f"wrote {DEFAULT_MODEL} ({DEFAULT_MODEL.stat().st_size / 1e6:.1f} MB)")
    faceage = str(Path(sys.executable).parent / "faceage")
    subprocess.run([faceage, "calibrate", "default", "--data", str(args.data), "--min-age", "18", "--min-age", "21",
                    "--max-minor-pass", "0.01"], check=True)  # fmt: skip
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "evaluation.py"), "--data", str(args.data)],
                   check=True)  # fmt: skip


if __name__ == "__main__":
    main()
