"""Age-group analytics: how many faces fall in each age bin across a folder of photos (``faceage groups``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceage.bins import AgeBins


def count_groups(rows: list[dict], bins: AgeBins) -> pd.DataFrame:
    """One row per bin: the faces whose most probable bin it is, and their share of all faces found."""
    faces = [r for r in rows if r["error"] == ""]
    counts = {label: 0 for label in bins.labels}
    for row in faces:
        counts[row["bin"]] += 1
    total = len(faces)
    frame = pd.DataFrame({"bin": bins.labels, "faces": [counts[label] for label in bins.labels]})
    frame["share"] = (frame["faces"] / total).round(4) if total else 0.0
    return frame


def plot_groups(frame: pd.DataFrame, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    bars = ax.bar(frame["bin"], frame["faces"], color="#4878a8")
    for bar, n, share in zip(bars, frame["faces"], frame["share"], strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{n} ({share:.0%})", ha="center", va="bottom",
                fontsize=9)  # fmt: skip
    ax.set(xlabel="estimated age group", ylabel="faces", title=title)
    ax.set_ylim(0, max(1, frame["faces"].max()) * 1.2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def groups_of_photos(inputs: list[str], out: Path, *, bins: str | None = None, model: str | Path | None = None,
                     workers: int = 1, progress=None) -> tuple[pd.DataFrame, Path, list[dict]]:  # fmt: skip
    """``faceage groups``: faces per estimated age group over the photos ``inputs`` name (the model's bins unless
    ``bins``), written to the CSV ``out`` with a bar chart beside it; returns (table, chart, predict's rows)."""
    from faceage.errors import FaceageError
    from faceage.files import atomic_write_text
    from faceage.infer.predict import predict_paths
    from faceage.onnxfile import ModelFile
    from faceage.weights import model_path

    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise FaceageError(f"{out}: give a .csv file for --out")
    age_bins = AgeBins.parse(bins or ModelFile.load(model_path(model)).metadata.bins)
    rows = list(predict_paths(inputs, model=str(model) if model else None, bins=bins, workers=workers,
                              progress=progress))  # fmt: skip
    frame = count_groups(rows, age_bins)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, frame.to_csv(index=False))
    chart = plot_groups(frame, out.with_suffix(".png"), f"{int(frame['faces'].sum())} faces by estimated age group")
    return frame, chart, rows
