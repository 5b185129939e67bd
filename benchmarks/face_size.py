"""How small can a face be and still get a good age? The measurement behind the detector's smallest face (32 px).

    .venv/bin/python benchmarks/face_size.py [--data data/utk] [--faces 400] [--model default]

Validation photos of a prepared UTKFace folder (original files, read from the archive recorded at preparation) are
shrunk so that the face box found at preparation is W pixels wide, set on a grey canvas three times their size, and
run end to end (MTCNN looking for faces down to 12 px, alignment, the age model). For each W: the share of faces
found and their mean absolute error, next to the error at 64 px and above. Writes benchmarks/results/face_size.md and
the README's face-size section.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import readme
from faceage.data.prepared import PreparedData
from faceage.detect import DetectorConfig
from faceage.infer import AgeEstimator
from readme import publish

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (16, 20, 24, 28, 32, 40, 48, 64, 96)


def shrunk_on_canvas(rgb: np.ndarray, factor: float) -> np.ndarray:
    height, width = rgb.shape[:2]
    size = (max(round(width * factor), 1), max(round(height * factor), 1))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    pad = max(small.shape[:2])
    return cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "utk")
    parser.add_argument("--faces", type=int, default=400)
    parser.add_argument("--model", default=None, help="ONNX file (default: the shipped model)")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()

    data = PreparedData.open(args.data)
    val = data.split("val")
    rows = val.sample(min(args.faces, len(val)), random_state=1).set_index("key")
    estimator = AgeEstimator(model=args.model, detector=DetectorConfig(min_face_size=12, min_face_fraction=0.0))
    errors: dict[int, list[float | None]] = {w: [] for w in WIDTHS}
    for key, original in data.originals(set(rows.index)):
        rgb = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"))
        row = rows.loc[key]
        for width in WIDTHS:
            faces = estimator.predict(shrunk_on_canvas(rgb, width / (row["x2"] - row["x1"])))
            errors[width].append(abs(faces[0].age - row["age"]) if faces else None)

    def mae(width: int) -> float:
        return float(np.mean([e for e in errors[width] if e is not None]))

    large = float(np.mean([mae(w) for w in WIDTHS if w >= 64]))
    lines = [
        f"`python benchmarks/face_size.py`: {len(rows)} validation photos of UTKFace shrunk until the face box is W px "
        f"wide; model `{estimator.name}`; detector looking for faces down to 12 px; {readme.machine()}.",
        "",
        "| face box width | faces found | MAE (years) | vs 64 px and above |",
        "|---|---|---|---|",
    ]
    for width in WIDTHS:
        found = [e for e in errors[width] if e is not None]
        lines.append(f"| {width} px | {len(found) / len(errors[width]):.1%} | {mae(width):.2f} | "
                     f"{mae(width) / large - 1:+.0%} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    print(table)
    publish(table, "face_size.md", None if args.no_readme else "face-size")


if __name__ == "__main__":
    main()
