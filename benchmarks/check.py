"""Screening policies measured on the test split: challenge age vs minors passed and adults referred.

    .venv/bin/python benchmarks/check.py [--data data/utk] [--model default]

For minimum ages 18 and 21, the curve of challenge age N (ask for ID from anyone estimated under N) against the
share of minors (the five years below the minimum age) estimated at or above N and the share of adults referred,
on the *test* split; then the calibrated defaults shipped with the model (chosen on the validation split by
`faceage calibrate`) with their test-split rates and 95% bootstrap intervals. Writes benchmarks/results/check.md and
the README's check section.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import readme
from faceage.check import Calibration, calibration_path, screening_rates
from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.model_source import onnx_file
from readme import publish

CURVE = {18: [18, 21, 23, 25, 28, 30, 33, 35, 38.5, 40], 21: [21, 23, 25, 28, 30, 33.5, 35, 38, 40]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/utk"))
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, onnx_file(args.model) as model_path:
        result = evaluate(model_path, samples_from_data_dir(args.data, "test"), Path(tmp) / "eval", n_resamples=10,
                          label=args.model)  # fmt: skip
        calibration = Calibration.load(calibration_path(model_path))
    done = result.predictions[result.predictions["status"] == "ok"]
    truth, estimate = done["age"].to_numpy(float), done["age_pred"].to_numpy(float)
    lines = [
        f"`python benchmarks/check.py`: `{result.metrics['model']['name']}` on the UTKFace test split "
        f"({len(truth):,} faces; minors = the five years below the minimum age; {readme.machine()}). A person "
        "passes when estimated at or "
        "above the challenge age N; everyone else is asked for ID.",
        "",
    ]
    for min_age, challenges in CURVE.items():
        lines += [f"Minimum age {min_age}:", "", "| challenge age N | minors passed | adults referred |",
                  "|---|---|---|"]  # fmt: skip
        for n in challenges:
            r = screening_rates(truth, estimate, min_age, n)
            lines.append(f"| {n:g} | {r['minors_passed']:.1%} of {r['n_minors']} | {r['adults_referred']:.1%} of "
                         f"{r['n_adults']:,} |")  # fmt: skip
        lines.append("")
    lines += [
        f"Shipped defaults, calibrated on the validation split for at most "
        f"{next(iter(calibration.screening.values()))['max_minor_pass']:.0%} of minors passed "
        "(`faceage calibrate default --data data/utk`), and their rates on the test split:",
        "",
        "| min age | challenge age | val: minors passed | val: adults referred | test: minors passed (95% CI) | "
        "test: adults referred (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for key, val in calibration.screening.items():
        min_age, n = float(key), val["challenge"]
        test = screening_rates(truth, estimate, min_age, n, n_resamples=1000)
        m_ci, a_ci = test["minors_passed_ci"], test["adults_referred_ci"]
        lines.append(
            f"| {key} | {n:g} | {val['minors_passed']:.1%} | {val['adults_referred']:.1%} | "
            f"{test['minors_passed']:.1%} ({m_ci[0]:.1%}-{m_ci[1]:.1%}) of {test['n_minors']} | "
            f"{test['adults_referred']:.1%} ({a_ci[0]:.1%}-{a_ci[1]:.1%}) |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "check.md", None if args.no_readme else "check")


if __name__ == "__main__":
    main()
