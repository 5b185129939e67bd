"""How much of the average each backbone should get: fused exports of dlibface and transfer-ema runs, chosen on the
validation split only.

    .venv/bin/python benchmarks/fusion.py --first runs/try/dlibface-ema --others runs/try/transfer-ema-seed0 ...
                                          [--shares 0.4,0.5,0.6,0.7] [--data data/utk]

For each share s of the first run: `faceage export FIRST OTHERS... --weights s,(1-s)/k,... --no-flip
--age-correction-data DATA` (float weights; the others' inputs resampled from the first's in the graph), then
`faceage evaluate` on the val split's aligned crops: MAE, five-bin accuracy, CS@5, 60+ bias and 13-17-year-olds
estimated 25 or older. Share 1 is the first run alone, share 0 the others alone. No test face is read. Writes
benchmarks/results/SECTION.md and the README's SECTION section (`--section`, default fusion).
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
    parser.add_argument("--first", type=Path, required=True)
    parser.add_argument("--others", type=Path, nargs="+", required=True)
    parser.add_argument("--shares", default="0,0.4,0.5,0.6,0.7,1")
    parser.add_argument("--section", default="fusion",
                        help="results file and README section to write (e.g. fusion-dlibface)")  # fmt: skip
    args = parser.parse_args()
    others = ", ".join(f"`{other.name}`" for other in args.others)
    lines = [
        f"`python benchmarks/fusion.py`: `{args.first.name}` averaged with {others}"
        f" (float weights, no flip averaging, age offset from the val split), measured on the val split's aligned "
        f"crops; {readme.machine()}.",
        "",
        "| share of the first | MAE | five-bin acc | CS@5 | bias 60+ | 13-17 estimated 25+ |",
        "|---|---|---|---|---|---|",
    ]
    for share in (float(s) for s in args.shares.split(",")):
        runs = ([args.first] if share > 0 else []) + (args.others if share < 1 else [])
        weights = ([share] if share > 0 else []) + ([(1 - share) / len(args.others)] * len(args.others) if share < 1
                                                    else [])  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "fused.onnx"
            export_model(runs, path, flip=False, weights=weights, correction_data=args.data)
            found = evaluate(path, samples_from_data_dir(args.data, "val"), Path(tmp) / "val")
        metrics = found.metrics["headline"]
        rows = found.predictions[found.predictions["status"] == "ok"]
        truth, estimate = rows["age"].to_numpy(float), rows["age_pred"].to_numpy(float)
        old, teens = truth >= 60, (truth >= 13) & (truth <= 17)
        old_bias, teens_over = (estimate[old] - truth[old]).mean(), (estimate[teens] >= 25).mean()
        lines.append(f"| {share:g} | {metrics['mae']:.3f} | {metrics['acc']:.1%} | {metrics['cs5']:.1%} | "
                     f"{old_bias:+.2f} | {teens_over:.1%} |")  # fmt: skip
        print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, f"{args.section}.md", args.section)


if __name__ == "__main__":
    main()
