"""Every try, one row: the runs under runs/try (each with its metrics.csv, hparams.yaml and, when it finished,
summary.json), their recipe changes and their validation figures. Selection reads validation only.

    .venv/bin/python benchmarks/tries.py [--runs runs/try]

For each run: the model, what its recipe changes from the model's default (`faceage.train.recipes`) and the size of
its aligned crops when it is not the model's own, the epochs run,
the best validation MAE (flip averaging, as training validates) and its epoch, the five-bin validation accuracy at that
epoch, and the training minutes when the run finished ("≥ N" when a session cut off before the clock was kept in the
checkpoints lost its minutes: `train_minutes_complete` false in the summary). Runs stopped early have no summary;
their best validation epoch so far is read from metrics.csv. Writes benchmarks/results/tries.md and the README's
tries section.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import yaml

from faceage.detect.align import DEFAULT_CROP_SIZE
from faceage.models import get_model_info
from faceage.train.recipes import Recipe, recipe_for
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def changes(model: str, recipe: dict, seed: int, teacher: dict | None, aligned_size: int) -> str:
    default = recipe_for(model).__dict__
    used = {**Recipe().__dict__, **recipe}  # a field newer than the run: the run behaved as its class default
    changed = [f"{key}={value}" for key, value in used.items() if key in default and default[key] != value]
    own_size = get_model_info(model).preprocessing.aligned_size
    changed += [f"{aligned_size} px crops (`prepare --crop-size`)"] if aligned_size != own_size else []
    changed += [f"seed {seed}"] if seed else []
    changed += [f"taught by `{teacher['name']}`"] if teacher else []  # recorded in the summary of a finished run
    return ", ".join(changed) or "default recipe"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "try")
    args = parser.parse_args()
    lines = ["| run | model | changes | epochs | best val MAE (epoch) | val acc there | train minutes |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for run in sorted(p for p in args.runs.iterdir() if (p / "metrics.csv").is_file()):
        hparams = yaml.unsafe_load((run / "hparams.yaml").read_text())  # our own files: tuples in the preprocessing
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        metrics = pd.read_csv(run / "metrics.csv").dropna(subset=["val_mae"])
        if metrics.empty:
            continue
        best = metrics.loc[metrics["val_mae"].idxmin()]
        model = hparams["model_name"]
        minutes = summary.get("train_minutes")
        at_least = "" if summary.get("train_minutes_complete", True) else "≥ "
        minutes_text = "-" if minutes is None else f"{at_least}{minutes:.1f}"
        aligned_size = hparams["preprocessing"].get("aligned_size", DEFAULT_CROP_SIZE)
        changed = changes(model, hparams["recipe"], summary.get("seed", 0), summary.get("teacher"), aligned_size)
        lines.append(
            f"| `{run.name}` | `{model}` | {changed} | "
            f"{int(metrics['epoch'].max()) + 1}{'' if summary else ' (stopped)'} | {best['val_mae']:.2f} "
            f"({int(best['epoch'])}) | {best['val_acc']:.1%} | {minutes_text} |"
        )
    table = "`python benchmarks/tries.py` (validation split only; runs in `runs/try/`):\n\n" + "\n".join(lines) + "\n"
    print(table)
    publish(table, "tries.md", "tries")


if __name__ == "__main__":
    main()
