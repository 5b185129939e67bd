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
