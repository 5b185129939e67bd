"""``faceage report``: one self-contained HTML file (every image inlined) from evaluations and training runs.

Inputs, any mix:
- an evaluation folder (``faceage evaluate --out``: metrics.json + predictions.csv): headline figures, confusion
  matrix, error by age band, fairness bars with intervals, the Challenge-N curve, best and worst predictions;
- a training run (``faceage train --out``: summary.json + metrics.csv): learning curves;
- a folder of runs (``faceage experiments --out``): the model-ladder table versus the study, and every run's curves.
Several evaluations are compared side by side. A Markdown summary is written next to the HTML.
"""

from __future__ import annotations

import base64
import io
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from jinja2 import Environment, PackageLoader, select_autoescape  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from faceage import __version__  # noqa: E402
from faceage.data.manifest import MANIFEST
from faceage.errors import FaceageError  # noqa: E402
from faceage.evaluate.evaluation import Evaluation, load_evaluation  # noqa: E402
from faceage.evaluate.formatting import accuracy_cell, mae_cell  # noqa: E402
from faceage.evaluate.formatting import num as _num  # noqa: E402
from faceage.evaluate.formatting import pct as _pct  # noqa: E402
from faceage.files import atomic_write_text  # noqa: E402

EXAMPLES = 8  # best and worst predictions shown per evaluation
THUMB = 112
COLOURS = ["#4878a8", "#d9a33a", "#6aa56e", "#c44e52", "#8172b2", "#937860"]


@dataclass
class ReportInputs:
    evaluations: list[Evaluation] = field(default_factory=list)
    runs: list[Path] = field(default_factory=list)  # training runs with metrics.csv
    ladders: list[Path] = field(default_factory=list)  # folders with table.md from faceage experiments


def collect_inputs(paths: list[Path]) -> ReportInputs:
    """Sort each path into evaluation / run / folder of runs; anything else is a clear error."""
    inputs = ReportInputs()
    for path in map(Path, paths):
        if not path.is_dir():
            raise FaceageError(f"{path}: not a folder; give evaluation folders (faceage evaluate) or training runs")
        if (path / "metrics.json").is_file():
            inputs.evaluations.append(load_evaluation(path))
        elif (path / "summary.json").is_file() or (path / "metrics.csv").is_file():
            inputs.runs.append(path)
        elif (path / "table.md").is_file() or any((p / "summary.json").is_file() for p in path.iterdir()):
            inputs.ladders.append(path)
            inputs.runs.extend(sorted(p for p in path.iterdir() if (p / "metrics.csv").is_file()))
        else:
            raise FaceageError(
                f"{path}: neither an evaluation (metrics.json), a training run (summary.json / metrics.csv) nor a "
                "folder of runs (table.md); run 'faceage evaluate' or 'faceage train' first"
            )
    if not (inputs.evaluations or inputs.runs):
        raise FaceageError("nothing to report: give at least one evaluation folder or training run")
    return inputs


# ---------------------------------------------------------------------------------------------------------- plots


def _png(fig) -> str:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _file_png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _name(evaluation: Evaluation) -> str:
    return f"{evaluation.metrics['model']['name']} · {evaluation.out.name}"


def confusion_plot(evaluation: Evaluation) -> str:
    matrix = np.asarray(evaluation.metrics["confusion"], dtype=float)
    labels = evaluation.metrics["bin_labels"]
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, f"{int(n)}\n{shares[i, j]:.0%}", ha="center", va="center", fontsize=8,
                color="white" if shares[i, j] > 0.55 else "black")  # fmt: skip
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="estimated bin", ylabel="true bin", title="Confusion matrix (share of each true bin)")
    return _png(fig)


def bands_plot(evaluations: list[Evaluation]) -> str:
    bands = [row["band"] for row in evaluations[0].metrics["bands"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.8 / len(evaluations)
    for k, evaluation in enumerate(evaluations):
        rows = {row["band"]: row for row in evaluation.metrics["bands"]}
        x = np.arange(len(bands)) + (k - (len(evaluations) - 1) / 2) * width
        mae = [rows[b]["mae"] if rows.get(b, {}).get("mae") is not None else np.nan for b in bands]
        bias = [rows[b]["bias"] if rows.get(b, {}).get("bias") is not None else np.nan for b in bands]
        colour = COLOURS[k % len(COLOURS)]
        left.bar(x, mae, width, color=colour, label=_name(evaluation))
        right.bar(x, bias, width, color=colour)
    for ax in (left, right):
        ax.set_xticks(range(len(bands)), bands)
        ax.set_xlabel("true age band")
    right.axhline(0, color="black", linewidth=0.8)
    left.set(ylabel="years", title="Mean absolute error by age band")
    right.set(ylabel="years", title="Bias (> 0: estimated older than they are)")
    left.legend(fontsize=7)
    return _png(fig)


def fairness_plot(evaluation: Evaluation, grouping: str) -> str:
    rows = evaluation.metrics["fairness"][grouping]["groups"]
    names = [f"{r['group']} (n={r['n']})" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.45 * len(rows) + 1.4), sharey=True)
    y = np.arange(len(rows))
    for ax, metric, scale, colour in ((left, "acc", 100, "#4878a8"), (right, "mae", 1, "#c44e52")):
        values = np.array([r[metric] for r in rows]) * scale
        low = values - np.array([r[f"{metric}_low"] for r in rows]) * scale
        high = np.array([r[f"{metric}_high"] for r in rows]) * scale - values
        ax.barh(y, values, xerr=[low, high], color=colour, alpha=0.8, capsize=3)
    left.set_yticks(y, names)
    left.invert_yaxis()
    left.set(xlabel="five-bin accuracy (%)", title=f"Accuracy by {grouping} (95% CI)")
    right.set(xlabel="MAE (years)", title=f"MAE by {grouping} (95% CI)")
    return _png(fig)


def challenge_plot(evaluations: list[Evaluation]) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for k, evaluation in enumerate(evaluations):
        curve = pd.DataFrame(evaluation.metrics["challenge_curve"])
        colour = COLOURS[k % len(COLOURS)]
        suffix = f" · {_name(evaluation)}" if len(evaluations) > 1 else ""
        ax.plot(curve["challenge"], curve["under_18_passed"] * 100, "-o", color=colour, ms=3,
                label="under-18s not asked for ID" + suffix)  # fmt: skip
        ax.plot(curve["challenge"], curve["minors_13_17_passed"] * 100, ":", color=colour,
                label="13-17 year olds not asked" + suffix)  # fmt: skip
        ax.plot(curve["challenge"], curve["adults_25_referred"] * 100, "--", color=colour,
                label="adults 25+ asked needlessly" + suffix)  # fmt: skip
    ax.axvline(25, color="grey", linewidth=0.8)
    ax.set(xlabel="challenge age N (ask for ID if estimated under N)", ylabel="% of people",
           title="Challenge-N screening: minors passed vs adults asked")  # fmt: skip
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _png(fig)


def learning_plot(runs: list[Path]) -> str | None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn = 0
    for k, run in enumerate(runs):
        path = run / "metrics.csv"
        if not path.is_file():
            continue
        log = pd.read_csv(path)
        if "epoch" not in log or "val_acc" not in log:
            continue
        val = log.dropna(subset=["val_acc"]).groupby("epoch").last()
        train = log.dropna(subset=["train_loss"]).groupby("epoch").last() if "train_loss" in log else None
        colour = COLOURS[k % len(COLOURS)]
        left.plot(val.index + 1, val["val_acc"] * 100, "-o", ms=3, color=colour, label=f"{run.name} val")
        if train is not None and "train_acc" in train:
            left.plot(train.index + 1, train["train_acc"] * 100, ":", color=colour, label=f"{run.name} train")
        if "val_mae" in val:
            right.plot(val.index + 1, val["val_mae"], "-o", ms=3, color=colour, label=f"{run.name} val")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    left.set(xlabel="epoch", ylabel="five-bin accuracy (%)", title="Accuracy per epoch")
    right.set(xlabel="epoch", ylabel="MAE (years)", title="Validation MAE per epoch")
    left.legend(fontsize=6, ncol=2)
    right.legend(fontsize=6, ncol=2)
    return _png(fig)


def _thumbnail(row: pd.Series) -> str | None:
    """The face as the model saw it: the aligned crop when there is one, else the box cut from the photo."""
    try:
        if row["crop"]:
            image = Image.open(row["crop"]).convert("RGB")
        elif Path(str(row["path"])).is_file() and not pd.isna(row["x1"]):
            photo = ImageOps.exif_transpose(Image.open(row["path"])).convert("RGB")
            image = photo.crop(tuple(int(round(row[c])) for c in ("x1", "y1", "x2", "y2")))
        else:
            return None
    except OSError:
        return None
    image.thumbnail((THUMB, THUMB))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def examples(evaluation: Evaluation) -> dict[str, list[dict]]:
    done = evaluation.predictions[evaluation.predictions["status"] == "ok"].sort_values("abs_error", kind="stable")
    picks = {"best": done.head(EXAMPLES), "worst": done.tail(EXAMPLES).iloc[::-1]}
    out = {}
    for kind, rows in picks.items():
        out[kind] = [
            {"image": image, "age": int(row["age"]), "pred": f"{row['age_pred']:.1f}",
             "interval": f"{row['age_low']:.0f}-{row['age_high']:.0f}", "error": f"{row['age_pred'] - row['age']:+.1f}"}
            for _, row in rows.iterrows()
            if (image := _thumbnail(row))
        ]  # fmt: skip
    return out


def data_plots(data_dir: Path, include_faces: bool) -> list[str]:
    from faceage.data.explore import explore

    with tempfile.TemporaryDirectory() as tmp:
        result = explore(data_dir, Path(tmp))
        return [_file_png(p) for p in result.plots if include_faces or p.stem != "samples_per_bin"]


# --------------------------------------------------------------------------------------------------------- tables


def summary_row(evaluation: Evaluation) -> dict:
    m = evaluation.metrics
    head = m["headline"]
    worst = max((b for b in m["bands"] if b["mae"] is not None), key=lambda b: b["mae"], default=None)
    spreads = {name: audit["mae_spread"] for name, audit in m["fairness"].items() if audit.get("mae_spread")}
    ethnic = spreads.get("ethnicity")
    return {
        "name": _name(evaluation),
        "source": m["data"]["source"],
        "faces": head["n"],
        "acc": accuracy_cell(head),
        "adjacent": _pct(head["adjacent_acc"]),
        "mae": mae_cell(head),
        "median": _num(head["median_ae"]),
        "cs5": _pct(head["cs5"]),
        "signed": _num(head["mean_signed"], "+.2f"),
        "interval": _pct(head.get("interval_coverage")),
        "ftp": _pct(m["counts"]["failure_to_process"]),
        "acc_all": _pct(m["all_images"]["acc"]),
        "worst_band": f"{worst['band']}: MAE {worst['mae']:.2f}, bias {worst['bias']:+.2f}" if worst else "-",
        "spread": (f"{ethnic['spread']:.2f} years ({ethnic['lowest']} → {ethnic['highest']})" if ethnic else "-"),
        "teens_25": _pct(m["screening"]["teens_13_17_estimated_25_plus"]),
        "minors_18": _pct(m["screening"]["under_18_estimated_18_plus"]),
        "adults_25": _pct(m["screening"]["adults_25_plus_estimated_under_25"]),
    }


SUMMARY_COLUMNS = [
    ("name", "model · evaluation"), ("faces", "faces"), ("acc", "bin acc (95% CI)"), ("adjacent", "±1 bin"),
    ("mae", "MAE (95% CI)"), ("median", "median AE"), ("cs5", "CS@5"), ("signed", "mean signed"),
    ("interval", "true age in 80% interval"), ("ftp", "failure to process"), ("acc_all", "bin acc, all images"),
    ("worst_band", "worst age band"),
    ("spread", "MAE spread across ethnicity"), ("teens_25", "13-17 estimated 25+"),
    ("minors_18", "under-18 estimated 18+"), ("adults_25", "25+ estimated under 25"),
]  # fmt: skip


def markdown_summary(evaluations: list[Evaluation], bands: bool = True) -> str:
    lines = ["| " + " | ".join(title for _, title in SUMMARY_COLUMNS) + " |",
             "|" + "---|" * len(SUMMARY_COLUMNS)]  # fmt: skip
    for evaluation in evaluations:
        row = summary_row(evaluation)
        lines.append("| " + " | ".join(str(row[key]) for key, _ in SUMMARY_COLUMNS) + " |")
    for evaluation in evaluations if bands else []:
        lines += ["", f"Error by true age band, {_name(evaluation)} (bias > 0: estimated older):", "",
                  "| band | faces | MAE | bias |", "|---|---|---|---|"]  # fmt: skip
        for band in evaluation.metrics["bands"]:
            lines.append(f"| {band['band']} | {band['n']} | {_num(band['mae'])} | {_num(band['bias'], '+.2f')} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- report


def build_report(
    paths: list[Path], out: Path, data_dir: Path | None = None, include_faces: bool = True, title: str | None = None
) -> tuple[Path, Path]:
    """Write ``out`` (HTML) and ``out`` with suffix .md (Markdown summary); returns both paths."""
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise FaceageError(f"{out}: the report is an HTML file; give a name ending in .html")
    inputs = collect_inputs(paths)
    evaluations = inputs.evaluations
    if data_dir is None:
        data_dir = next((Path(e.metrics["data"]["data_dir"]) for e in evaluations
                         if e.metrics["data"].get("data_dir")), None)  # fmt: skip
    data = data_plots(data_dir, include_faces) if data_dir and (Path(data_dir) / MANIFEST).is_file() else []
    md = MarkdownIt("commonmark").enable("table")
    ladders = [{"name": str(p), "table": md.render((p / "table.md").read_text())} for p in inputs.ladders
               if (p / "table.md").is_file()]  # fmt: skip
    sections = []
    for evaluation in evaluations:
        m = evaluation.metrics
        sections.append(
            {
                "name": _name(evaluation),
                "metrics": m,
                "row": summary_row(evaluation),
                "confusion": confusion_plot(evaluation),
                "fairness": [
                    {"grouping": g, "plot": fairness_plot(evaluation, g), "audit": a}
                    for g, a in m["fairness"].items()
                    if a["groups"]
                ],  # fmt: skip
                "examples": examples(evaluation) if include_faces else None,
            }
        )
    template = Environment(loader=PackageLoader("faceage.evaluate"), autoescape=select_autoescape()).get_template(
        "report.html.j2"
    )
    html = template.render(
        title=title or "faceage report",
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        inputs=[str(p) for p in paths],
        data_dir=str(data_dir) if data else None,
        data_plots=data,
        learning=learning_plot(inputs.runs) if inputs.runs else None,
        ladders=ladders,
        columns=SUMMARY_COLUMNS,
        sections=sections,
        bands=bands_plot(evaluations) if evaluations else None,
        challenge=challenge_plot(evaluations) if evaluations else None,
        include_faces=include_faces,
        pct=_pct,
        num=_num,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, html)
    summary = out.with_suffix(".md")
    atomic_write_text(summary, markdown_summary(evaluations) if evaluations else "No evaluation in this report.\n")
    return out, summary
