"""Regression to the middle: per-band bias of a model on the validation split, before and after post-hoc corrections
fitted on validation faces only.

    .venv/bin/python benchmarks/bias.py [--data data/utk] [--model default] [--model runs/try/x/model.onnx ...]

For each model (a shipped name or an ONNX file): `faceage evaluate` on the val split's aligned crops, then the
estimates as they are and after a quantile mapping of the estimate onto the true ages (the estimate's quantile in the
fitting faces becomes the true age at that quantile; `strength` 0.5 moves halfway), fitted on one half of the
validation faces and measured on the other (both ways round, a fixed random halving): no test face is read. Prints
MAE, CS@5, the bias per true-age band (estimate - truth) and the share of 13-17-year-olds estimated 25 or older;
writes benchmarks/results/bias.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import readme
from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.metrics import age_bands, band_label
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
QUANTILES = np.linspace(0.0, 1.0, 201)


def quantile_mapping(fit_truth: np.ndarray, fit_estimate: np.ndarray, strength: float):
    """estimate → (1 - strength) · estimate + strength · the true age at the estimate's quantile among the fitting
    faces (monotone, so the order of the faces is kept)."""
    est_q, true_q = np.quantile(fit_estimate, QUANTILES), np.quantile(fit_truth, QUANTILES)
    return lambda estimate: (1 - strength) * estimate + strength * np.interp(estimate, est_q, true_q)


def cross_fitted(truth: np.ndarray, estimate: np.ndarray, strength: float, seed: int = 0) -> np.ndarray:
    order = np.random.default_rng(seed).permutation(len(truth))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    corrected = estimate.copy()
    for fit, apply in (halves, halves[::-1]):
        corrected[apply] = quantile_mapping(truth[fit], estimate[fit], strength)(estimate[apply])
    return corrected


def row(label: str, truth: np.ndarray, estimate: np.ndarray) -> str:
    error = estimate - truth
    teens = (truth >= 13) & (truth <= 17)
    bands = [f"{error[mask].mean():+.2f}" for _, _, mask in age_bands(truth)]
    return (f"| {label} | {np.abs(error).mean():.2f} | {(np.abs(error) <= 5).mean():.1%} | " + " | ".join(bands)
            + f" | {(estimate[teens] >= 25).mean():.1%} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--model", action="append", default=None, help="shipped name or ONNX file (repeatable)")
    args = parser.parse_args()
    models = args.model or ["default"]
    lines = None
    for model in models:
        with tempfile.TemporaryDirectory() as out:
            found = evaluate(model, samples_from_data_dir(args.data, "val"), Path(out)).predictions
        found = found[found["status"] == "ok"]
        truth, estimate = found["age"].to_numpy(float), found["age_pred"].to_numpy(float)
        if lines is None:
            heads = [band_label(low, high) for low, high, _ in age_bands(truth)]
            lines = [
                f"`python benchmarks/bias.py`: {len(truth)} faces of the UTKFace val split (aligned crops); bias = "
                f"estimate - truth per true-age band; corrections fitted on one half of the faces, measured on the "
                f"other; {readme.machine()}.",
                "",
                "| model | MAE | CS@5 | " + " | ".join(f"bias {h}" for h in heads) + " | 13-17 estimated 25+ |",
                "|---|---|---|" + "---|" * len(heads) + "---|",
            ]
        name = Path(model).stem if model.endswith(".onnx") else f"`{model}`"
        lines.append(row(f"{name} as it is", truth, estimate))
        for strength in (0.5, 1.0):
            lines.append(row(f"{name}, quantile mapping {strength:g}", truth, cross_fitted(truth, estimate, strength)))
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "bias.md", "bias")


if __name__ == "__main__":
    main()
