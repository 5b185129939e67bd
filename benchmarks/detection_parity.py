"""Boxes of faceage's MTCNN against the reference MTCNN, per image.

    .venv/bin/python benchmarks/detection_parity.py [--shared ../shared/data]

The reference boxes are tests/fixtures/mtcnn_reference.json (the `mtcnn` package run once with TensorFlow by
tests/fixtures/make_mtcnn_reference.py). faceage runs with the same cascade thresholds; for every reference face the
best IoU with one of ours is reported. Writes benchmarks/results/detection_parity.md.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path

from skimage import data

import readme
from faceage.detect import MTCNN, DetectorConfig
from faceage.images import load_rgb
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "mtcnn_reference.json"


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    reference = json.loads(FIXTURE.read_text())
    detector = MTCNN(
        DetectorConfig(
            min_score=reference["meta"]["thresholds"]["threshold_onet"],
            min_face_fraction=0,
            min_face_size=reference["meta"]["min_face_size"],
        )
    )
    rows, worst, faces = [], 1.0, 0
    with tarfile.open(args.shared / "UTKFace.tar.gz") as tar:
        for key, expected in reference["images"].items():
            source, name = key.split("/", 1)
            if source == "photos":
                image = load_rgb(args.shared / "photos" / name)
            elif source == "skimage":
                image = load_rgb(getattr(data, name)())
            else:
                image = load_rgb(io.BytesIO(tar.extractfile(name).read()).getvalue())
            ours = detector.detect(image)
            ious = [max((iou(f["box"], d.box) for d in ours), default=0.0) for f in expected]
            worst = min([worst, *ious])
            faces += len(expected)
            low = f"{min(ious):.3f}" if ious else "-"
            rows.append(f"| {key} | {len(expected)} | {len(ours)} | {low} |")
    text = (
        "`python benchmarks/detection_parity.py`: faceage's MTCNN (ONNX Runtime) against the reference `mtcnn` "
        f"package (TensorFlow), same thresholds; {len(rows)} images, {faces} reference faces, "
        f"worst IoU {worst:.3f}; {readme.machine()}.\n\n"
        "| image | reference faces | faceage faces | lowest IoU |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    publish(text, "detection_parity.md")


if __name__ == "__main__":
    main()
