"""``faceage explore``: the study's data plots, made reproducible from the manifest.

Gender and ethnicity composition is shown to audit the data's balance only; faceage never predicts either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from faceage.bins import AgeBins  # noqa: E402
from faceage.data.prepared import PreparedData  # noqa: E402
from faceage.data.utkface import GENDERS, RACES  # noqa: E402

SPLIT_ORDER = ["train", "val", "test"]
SAMPLES_PER_BIN = 8


@dataclass(frozen=True)
class ExploreResult:
    table: pd.DataFrame  # one row per bin: counts per split, total, share
    plots: list[Path]


def _bin_split_counts(usable: pd.DataFrame, bins: AgeBins) -> pd.DataFrame:
    return pd.crosstab(usable["bin"], usable["split"]).reindex(index=bins.labels, columns=SPLIT_ORDER, fill_value=0)


def bin_table(manifest: pd.DataFrame, bins: AgeBins) -> pd.DataFrame:
    counts = _bin_split_counts(manifest[manifest["status"] == "ok"], bins)
    counts["total"] = counts.sum(axis=1)
    counts["share"] = (counts["total"] / max(int(counts["total"].sum()), 1)).map(lambda v: f"{v:.1%}")
    return counts.reset_index(names="bin")


def explore(data_dir: Path, out: Path) -> ExploreResult:
    data = PreparedData.of(data_dir)
    data_dir, out = data.root, Path(out)
    manifest, bins = data.manifest, data.bins
    out.mkdir(parents=True, exist_ok=True)
    usable = manifest[manifest["status"] == "ok"]
    plots = [
        _age_histogram(usable, bins, out / "age_histogram.png"),
        _per_bin(usable, bins, out / "images_per_bin.png"),
        _samples(usable, bins, data_dir, out / "samples_per_bin.png"),
        _composition(usable, out / "composition.png"),
        _quality(manifest, out / "quality.png"),
    ]
    return ExploreResult(bin_table(manifest, bins), plots)


def _age_histogram(usable: pd.DataFrame, bins: AgeBins, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(9, 4))
    ages = usable["age"].astype(int)
    ax.hist(ages, bins=np.arange(0, ages.max() + 2) - 0.5, color="#4878a8")
    for edge in bins.lower_edges[1:]:
        ax.axvline(edge - 0.5, color="#c44e52", linestyle="--", linewidth=1)
    ax.set(
        xlabel="age (years)",
        ylabel="faces",
        title=f"Age distribution of {len(usable):,} usable faces (dashes: bin edges)",
    )
    return _save(fig, path)


def _per_bin(usable: pd.DataFrame, bins: AgeBins, path: Path) -> Path:
    counts = _bin_split_counts(usable, bins)
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(counts))
    for split, colour in zip(SPLIT_ORDER, ["#4878a8", "#6aa56e", "#d9a33a"], strict=True):
        ax.bar(counts.index, counts[split], bottom=bottom, label=split, color=colour)
        bottom += counts[split].to_numpy()
    for x, total in enumerate(bottom):
        ax.text(x, total, f"{int(total):,}\n{total / bottom.sum():.0%}", ha="center", va="bottom", fontsize=8)
    ax.set(xlabel="age bin", ylabel="faces", title="Images per age bin (balance) and split")
    ax.set_ylim(0, bottom.max() * 1.35)
    ax.legend(ncol=3, loc="upper center")
    return _save(fig, path)


def _samples(usable: pd.DataFrame, bins: AgeBins, data_dir: Path, path: Path) -> Path:
    fig, axes = plt.subplots(len(bins), SAMPLES_PER_BIN, figsize=(SAMPLES_PER_BIN * 1.2, len(bins) * 1.35))
    for row, label in enumerate(bins.labels):
        rows = usable[usable["bin"] == label].sort_values("sha1").head(SAMPLES_PER_BIN)  # fixed, seedless pick
        for col in range(SAMPLES_PER_BIN):
            ax = axes[row, col]
            ax.axis("off")
            if col < len(rows):
                record = rows.iloc[col]
                ax.imshow(Image.open(data_dir / record["crop"]))
                ax.set_title(f"{int(record['age'])} y", fontsize=7)
        axes[row, 0].text(-0.15, 0.5, label, transform=axes[row, 0].transAxes, ha="right", va="center", fontsize=9)
    fig.suptitle("Aligned face crops per age bin")
    return _save(fig, path)


def _composition(usable: pd.DataFrame, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    gender = usable["gender"].map(GENDERS).value_counts()
    race = usable["race"].map(RACES).value_counts()
    left.bar(gender.index, gender.values, color="#8172b2")
    right.bar(race.index, race.values, color="#937860")
    left.set(title="by gender (audit only)", ylabel="faces")
    right.set(title="by UTKFace ethnicity label (audit only)")
    fig.suptitle("Composition of usable faces: used to audit fairness, never predicted")
    return _save(fig, path)


def _quality(manifest: pd.DataFrame, path: Path) -> Path:
    counts = manifest["status"].value_counts()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(counts.index, counts.values, color=["#6aa56e" if s == "ok" else "#c44e52" for s in counts.index])
    for y, n in enumerate(counts.values):
        ax.text(n, y, f" {n:,} ({n / counts.sum():.1%})", va="center", fontsize=8)
    ax.set(xlabel="files", title="Data quality: status of every source file")
    ax.set_xlim(0, counts.max() * 1.25)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
