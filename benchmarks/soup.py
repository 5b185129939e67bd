"""Weight averaging of fine-tuned runs (a uniform "model soup", Wortsman et al. 2022) against the first run alone
and against averaging the runs' outputs: a soup costs one network per face, an output average one per run.

    .venv/bin/python benchmarks/soup.py runs/try/dlibface-e18 runs/try/dlibface-e18-seed1 [--data data/utk]

The soup is every floating-point weight and buffer of the runs' best checkpoints averaged (the runs must be one
architecture). A batch-norm layer's running statistics do not average: they describe the features of one run's
weights, not of the averaged ones. `--reestimate-bn` adds the soup with those statistics measured again, on the
soup's own features of every training face (unaugmented; Izmailov et al. 2018 do the same for SWA).

Each candidate is exported as `faceage export` does with flip averaging (float weights), and measured
as benchmarks/bias.py measures: the val split's aligned crops, each correction fitted on one half of the faces and
measured on the other. No test face is read. Writes benchmarks/results/SECTION.md (`--section`, default soup) and,
unless `--no-readme`, the README's SECTION section.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import readme
from bias import CORRECTIONS, SHORT_LIST, cross_fitted, row, table_head
from faceage.errors import FaceageError
from faceage.preprocessing import Preprocessing
from faceage.train.data import FaceDataModule
from faceage.train.export import export_model, find_checkpoint
from faceage.train.module import AgeModule
from faceage.train.offset import validation_probabilities
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def souped_checkpoint(runs: list[Path], out: Path) -> Path:
    """The runs' best checkpoints with their floating-point state averaged, written to ``out`` (a .ckpt file)."""
    checkpoints = [torch.load(find_checkpoint(run), map_location="cpu", weights_only=False) for run in runs]
    states = [checkpoint["state_dict"] for checkpoint in checkpoints]
    if any(state.keys() != states[0].keys() for state in states):
        raise FaceageError("the runs are not one architecture: their checkpoints hold other weights")
    averaged = {key: sum(s[key] for s in states) / len(states) if torch.is_floating_point(value) else value
                for key, value in states[0].items()}  # fmt: skip
    kept = {key: checkpoints[0][key] for key in ("hyper_parameters", "pytorch-lightning_version") if key in
            checkpoints[0]}  # fmt: skip
    torch.save({**kept, "state_dict": averaged}, out)
    return out


def with_batch_norm_reestimated(checkpoint: Path, data: Path, out: Path) -> Path:
    """``checkpoint`` with every batch-norm layer's running statistics measured again on the training faces."""
    module = AgeModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise FaceageError(f"{checkpoint}: the network has no batch-norm layer; leave out --reestimate-bn")
    for layer in layers:  # momentum None: the running statistics become the plain average over all batches
        layer.reset_running_stats()
        layer.momentum = None
        layer.train()
    preprocessing = Preprocessing.from_dict(module.hparams.preprocessing)
    with torch.no_grad():
        for images, _ages, _bins in FaceDataModule(data, preprocessing, augment=False, batch_size=128).loader("train"):
            module.net(images)
    stored = torch.load(checkpoint, map_location="cpu", weights_only=False)
    torch.save({**stored, "state_dict": module.eval().state_dict()}, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of one model (two or more)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--section", default="soup", help="results file and README section to write")
    parser.add_argument("--no-readme", action="store_true", help="write the results file only")
    parser.add_argument(
        "--reestimate-bn",
        action="store_true",
        help="also measure the soup with its batch-norm statistics re-estimated on the training faces",
    )
    args = parser.parse_args()
    if len(args.runs) < 2:
        raise SystemExit("give two or more run folders to average")
    names = " + ".join(f"`{run.name}`" for run in args.runs)
    lines = None
    with tempfile.TemporaryDirectory() as tmp:
        soup = souped_checkpoint(args.runs, Path(tmp) / "soup.ckpt")
        candidates = {f"`{args.runs[0].name}` alone": [args.runs[0]], "weight soup (one network)": [soup]}
        if args.reestimate_bn:
            repaired = with_batch_norm_reestimated(soup, args.data, Path(tmp) / "soup-bn.ckpt")
            candidates["weight soup, batch-norm statistics re-estimated (one network)"] = [repaired]
        candidates[f"output average ({len(args.runs)} networks)"] = args.runs
        for label, members in candidates.items():
            path = Path(tmp) / "candidate.onnx"
            export_model(members, path, flip=True)
            probs, truth = validation_probabilities(path, args.data)
            if lines is None:
                lines = [
                    f"`python benchmarks/soup.py`: {names} (flip averaging, float weights; the output average runs "
                    f"{len(args.runs)} networks a face, the soup one), {len(truth)} faces of the UTKFace val split "
                    f"(aligned crops); each correction fitted on one half of the faces and measured on the other; "
                    f"{readme.machine()}.",
                    "",
                    *table_head(truth),
                ]
            for correction in SHORT_LIST:
                lines.append(row(f"{label}, {correction}", truth, *cross_fitted(truth, probs, CORRECTIONS[correction])))
                print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, f"{args.section}.md", None if args.no_readme else args.section)


if __name__ == "__main__":
    main()
