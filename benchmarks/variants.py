"""What each choice behind the shipped default model is worth, measured on files exported the same way.

    .venv/bin/python benchmarks/variants.py [--data data/utk] [--runs runs/ladder] [--refit runs/refit]

Exports (`faceage.train.export.export_model`, as `faceage export`) and evaluates (`faceage evaluate`, aligned
crops of the test split) variants of the default: three, four or five `transfer-ema` runs; int8 or float; with or
without the age offset; with or without flip averaging; and three runs refit on train+val (`faceage train --fit-on
train+val --epochs 10`, in --refit) against the same three seeds trained on train only. Needs the runs' checkpoints
(`python benchmarks/ladder.py` trains them). Writes benchmarks/results/variants.md and the README's section.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import readme
from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.train.export import export_model
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "ladder")
    parser.add_argument("--refit", type=Path, default=ROOT / "runs" / "refit")
    args = parser.parse_args()
    seeds = [args.runs / "transfer-ema"] + [args.runs / f"transfer-ema-seed{k}" for k in range(1, 5)]
    refit = [args.refit / f"transfer-ema-trainval-seed{k}" for k in range(3)]
    int8, offset = {"int8_data": args.data}, {"correction_data": args.data}
    variants = [  # label, runs, export options
        ("4 runs, int8, no flip, age offset (**shipped default**)", seeds[:4], {**int8, **offset}),
        ("4 runs, int8, no flip, no offset", seeds[:4], int8),
        ("4 runs, int8, flip averaging, age offset", seeds[:4], {**int8, **offset, "flip": True}),
        ("5 runs, int8, no flip, age offset", seeds, {**int8, **offset}),
        ("3 runs, int8, no flip, age offset", seeds[:3], {**int8, **offset}),
        ("1 run (seed 1), int8, no flip, age offset (**shipped fast**)", seeds[1:2], {**int8, **offset}),
        ("3 runs, float, no flip, no offset: trained on train", seeds[:3], {}),
        ("3 runs, float, no flip, no offset: refit on train+val", refit, {}),
    ]
    samples = samples_from_data_dir(args.data, "test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, runs, options) in enumerate(variants):
            print(f"{label} ...", flush=True)
            path = Path(tmp) / f"variant-{i}.onnx"
            report = export_model(runs, path, flip=options.get("flip", False), int8_data=options.get("int8_data"),
                                  correction_data=options.get("correction_data"))  # fmt: skip
            head = evaluate(path, samples, Path(tmp) / f"eval-{i}", n_resamples=10).metrics["headline"]
            years = f"{report.offset.years:+.2f}" if report.offset else "-"
            rows.append(f"| {label} | {head['acc']:.1%} | {head['mae']:.3f} | {head['mean_signed']:+.2f} | {years} | "
                        f"{path.stat().st_size / 1e6:.1f} MB |")  # fmt: skip
    text = (
        f"`python benchmarks/variants.py`: variants of the default exported the same way and measured by `faceage "
        f"evaluate` on the {len(samples.frame)} test images of `faceage prepare` (aligned crops; the offset is "
        f"measured on the val split; {readme.machine()}):\n\n"
        "| variant | five-bin accuracy | MAE | mean signed error | age offset | file |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    publish(text, "variants.md", "variants")
    print(text)


if __name__ == "__main__":
    main()
