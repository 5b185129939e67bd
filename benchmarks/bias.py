"""Regression to the middle: per-band bias of a model on the validation split, before and after the post-hoc age
corrections `faceage export --age-correction-data` can store (faceage.train.offset), fitted on validation faces only.

    .venv/bin/python benchmarks/bias.py [--data data/utk] [--model default] [--model runs/try/x/model.onnx ...]

For each model (a shipped name or an ONNX file): its age distributions for the val split's aligned crops (computed
as written), then the estimates without a correction, with the median offset, and with the quantile mapping at two
strengths (the estimate's quantile in the fitting faces sent to the true age at that quantile; 0.5 goes halfway)
over the whole age range or from faceage.train.offset.MAPPING_FROM_AGE up (the median offset below it),
each fitted on one half of the validation faces and measured on the other (both ways round, a fixed random halving),
applied to the whole distribution as the estimator applies it: no test face is read. Prints MAE, CS@5, five-bin
accuracy, the bias per true-age band (estimate - truth) and the share of 13-17-year-olds estimated 25 or older.
`--balanced TAU` (repeatable) adds rows for the distributions divided by the training faces' age density to the
power TAU (smoothed as faceage.train.module.age_weights smooths it for `reweight`) and renormalised: the
inference-time form of a balanced softmax (logit adjustment, Menon et al. 2021; the categorical counterpart of
Balanced MSE, Ren et al. 2022), which no file can store; each with no correction, the median offset and the mapping
from MAPPING_FROM_AGE. `--young` adds the mapping at both ends: from MAPPING_FROM_AGE up and below 20, 25 or 30
years (the median offset between). `--median` adds rows for the distribution's median instead of its mean as the
estimate (the correction fitted on the medians; the minimiser of the expected absolute error, were the distribution
calibrated). `--bin-biases` adds rows whose five-bin answer is re-weighted by one term per bin (on the log bin
probabilities, the bias part of vector scaling) fitted for the likelihood of the true bins on the other half: a
post-hoc correction of the bin answer alone, the estimates as without it. Writes benchmarks/results/SECTION.md and
the README's SECTION section (`--section`, default bias; `--no-readme`: the results file only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import readme
from faceage.bins import AgeBins
from faceage.data.prepared import PreparedData
from faceage.distribution import AgeMap, age_quantile, expected_age, head_estimates
from faceage.metrics import age_bands, band_label
from faceage.train.module import age_weights
from faceage.train.offset import MAPPING_FROM_AGE, fit_quantile_mapping, validation_probabilities
from faceage.weights import model_path
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
STRENGTHS = (0.5, 1.0)


def median_age(probs: np.ndarray, age_map: AgeMap | None = None) -> np.ndarray:
    """The distribution's median carried through ``age_map``."""
    return age_quantile(probs, 0.5, age_map)


def halves(faces: int, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(fitting, measured) index pairs of a fixed random halving of ``faces`` faces, both ways round."""
    order = np.random.default_rng(seed).permutation(faces)
    first, second = order[: faces // 2], order[faces // 2 :]
    return (first, second), (second, first)


def fit_bin_biases(bin_probs: np.ndarray, true_bins: np.ndarray) -> np.ndarray:
    """One additive term per bin on the log bin probabilities (the first fixed at 0) that maximises the likelihood
    of the true bins: the bias part of vector scaling, a post-hoc recalibration of the five-bin answer."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    logs = np.log(np.clip(bin_probs, 1e-9, None))
    rows = np.arange(len(true_bins))

    def loss(terms: np.ndarray) -> float:
        return float(-log_softmax(logs + np.r_[0.0, terms], axis=1)[rows, true_bins].mean())

    return np.r_[0.0, minimize(loss, np.zeros(bin_probs.shape[1] - 1)).x]


def cross_fitted_bin_biases(truth: np.ndarray, bin_probs: np.ndarray, seed: int = 0) -> np.ndarray:
    """``bin_probs`` of each half of the faces re-weighted by the bin terms :func:`fit_bin_biases` fits on the other
    half (the five-bin answer changes; the age estimates do not)."""
    true_bins = np.asarray(AgeBins.default().index(truth.astype(int)))
    adjusted = np.zeros_like(bin_probs)
    for fitting, applied in halves(len(truth), seed):
        weighted = bin_probs[applied] * np.exp(fit_bin_biases(bin_probs[fitting], true_bins[fitting]))
        adjusted[applied] = weighted / weighted.sum(axis=1, keepdims=True)
    return adjusted


def cross_fitted(truth: np.ndarray, probs: np.ndarray, fit, seed: int = 0,
                 point=expected_age) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Estimates (``point(probs, age_map)``: the mean, as the estimator gives) and bin probabilities of each half of
    the faces through the AgeMap ``fit(truth, estimate)`` makes from the other half (None: no correction)."""
    ages, bins = np.zeros(len(truth)), np.zeros((len(truth), len(AgeBins.default())))
    raw = point(probs)
    for fitting, applied in halves(len(truth), seed):
        age_map = fit(truth[fitting], raw[fitting])
        found = head_estimates(probs[applied], AgeBins.default(), predicts_ages=True, age_map=age_map)
        ages[applied], bins[applied] = point(probs[applied], age_map), found.bin_probs
    return ages, bins


CORRECTIONS = {
    "no correction": lambda truth, estimate: None,
    "median offset": lambda truth, estimate: AgeMap.shift(float(np.median(truth - estimate))),
    **{f"quantile mapping {s:g}, whole range": (lambda truth, estimate, s=s: fit_quantile_mapping(truth, estimate, s,
                                                                                                  from_age=None))
       for s in STRENGTHS},
    **{f"quantile mapping {s:g} from {MAPPING_FROM_AGE:g}": (lambda truth, estimate, s=s: fit_quantile_mapping(
        truth, estimate, s)) for s in STRENGTHS},
}  # fmt: skip
# the mapping at both ends: from MAPPING_FROM_AGE up and below each of these ages (--young)
YOUNG_ENDS = (20.0, 25.0, 30.0)
YOUNG = {
    f"quantile mapping 1 from {MAPPING_FROM_AGE:g} and below {end:g}": (
        lambda truth, estimate, end=end: fit_quantile_mapping(truth, estimate, 1.0, up_to_age=end)
    )
    for end in YOUNG_ENDS
}
# the corrections shown for the variants of a model (--balanced here, benchmarks/soup.py)
SHORT_LIST = ("no correction", "median offset", f"quantile mapping 1 from {MAPPING_FROM_AGE:g}")


def balanced(probs: np.ndarray, train_ages: np.ndarray, tau: float) -> np.ndarray:
    """``probs`` divided by the training faces' smoothed age density to the power ``tau``, renormalised."""
    weighted = probs * np.asarray(age_weights(train_ages, "inverse", sigma=2.0))[None, : probs.shape[1]] ** tau
    return weighted / weighted.sum(axis=1, keepdims=True)


def table_head(truth: np.ndarray) -> list[str]:
    """The header and rule lines of the table :func:`row` fills."""
    heads = [band_label(low, high) for low, high, _ in age_bands(truth)]
    bands = " | ".join(f"bias {h}" for h in heads)
    return [f"| model | MAE | CS@5 | five-bin acc | {bands} | 13-17 estimated 25+ |",
            "|---|---|---|---|" + "---|" * len(heads) + "---|"]  # fmt: skip


def row(label: str, truth: np.ndarray, estimate: np.ndarray, bin_probs: np.ndarray) -> str:
    error = estimate - truth
    teens = (truth >= 13) & (truth <= 17)
    bins = AgeBins.default()
    accuracy = (bin_probs.argmax(axis=1) == bins.index(truth.astype(int))).mean()
    bands = [f"{error[mask].mean():+.2f}" for _, _, mask in age_bands(truth)]
    return (f"| {label} | {np.abs(error).mean():.2f} | {(np.abs(error) <= 5).mean():.1%} | {accuracy:.1%} | "
            + " | ".join(bands) + f" | {(estimate[teens] >= 25).mean():.1%} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--model", action="append", default=None, help="shipped name or ONNX file (repeatable)")
    parser.add_argument("--section", default="bias", help="results file and README section to write")
    parser.add_argument(
        "--balanced",
        type=float,
        action="append",
        default=[],
        metavar="TAU",
        help="also the distributions divided by the training age density ** TAU (repeatable)",
    )
    parser.add_argument(
        "--young",
        action="store_true",
        help="also the quantile mapping at the young end (below 20, 25 and 30 years) besides the old",
    )
    parser.add_argument("--median", action="store_true", help="also the distribution's median as the estimate")
    parser.add_argument(
        "--bin-biases",
        action="store_true",
        help="also the five-bin answer re-weighted by per-bin terms fitted on the other half",
    )
    parser.add_argument("--no-readme", action="store_true", help="write the results file only")
    args = parser.parse_args()
    models = args.model or ["default"]
    train_ages = PreparedData.open(args.data).split("train")["age"].to_numpy(float) if args.balanced else None
    lines = None
    for model in models:
        probs, truth = validation_probabilities(model_path(model), args.data)
        if lines is None:
            lines = [
                f"`python benchmarks/bias.py`: {len(truth)} faces of the UTKFace val split (aligned crops); bias = "
                f"estimate - truth per true-age band; each correction fitted on one half of the faces and measured on "
                f"the other; {readme.machine()}.",
                "",
                *table_head(truth),
            ]
        name = Path(model).stem if str(model).endswith(".onnx") else f"`{model}`"
        corrected = {label: cross_fitted(truth, probs, fit)
                     for label, fit in {**CORRECTIONS, **(YOUNG if args.young else {})}.items()}  # fmt: skip
        lines += [row(f"{name}, {label}", truth, *found) for label, found in corrected.items()]
        for label in SHORT_LIST if args.median else ():
            lines.append(row(f"{name} median, {label}", truth,
                             *cross_fitted(truth, probs, CORRECTIONS[label], point=median_age)))  # fmt: skip
        for label in SHORT_LIST if args.bin_biases else ():
            ages, bin_probs = corrected[label]
            lines.append(row(f"{name}, {label}, bin biases", truth, ages, cross_fitted_bin_biases(truth, bin_probs)))
        for tau in args.balanced:
            reweighted = balanced(probs, train_ages, tau)
            for label in SHORT_LIST:
                lines.append(row(f"{name} balanced {tau:g}, {label}", truth,
                                 *cross_fitted(truth, reweighted, CORRECTIONS[label])))  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, f"{args.section}.md", None if args.no_readme else args.section)


if __name__ == "__main__":
    main()
