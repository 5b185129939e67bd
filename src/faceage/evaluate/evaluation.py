"""``faceage evaluate``: a model on labelled faces → ``predictions.csv`` (one row per image) and ``metrics.json``.

Labelled faces come from a prepared data folder (one split: its aligned crops, or with ``photos=True`` its original
files through detection and alignment) or from any folder of UTKFace-named images or a CSV ``path,age[,gender,race]``
(photos, through the same detection and alignment as ``faceage predict``; the largest face is the one judged).
Images with no detected face or that cannot be read count as failures to process: reported separately, and as errors
in the "all images" variant of the headline figures.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.bins import AgeBins
from faceage.data.manifest import MANIFEST
from faceage.data.prepared import PreparedData
from faceage.data.utkface import BadName, parse_name
from faceage.detect import select_face
from faceage.errors import FaceageError, ImageError
from faceage.evaluate.fairness import fairness_audit
from faceage.files import atomic_write_text
from faceage.images import IMAGE_SUFFIXES
from faceage.infer.estimator import AgeEstimator, Face
from faceage.metrics import (
    age_errors,
    band_errors,
    bin_agreement,
    bootstrap_interval,
    challenge_curve,
    interval_agreement,
)
from faceage.weights import model_path

BATCH = 128
PREDICTION_COLUMNS = [
    "path", "age", "gender", "race", "status", "age_pred", "age_low", "age_high", "bin", "bin_pred", "bin_prob",
    "abs_error", "correct", "x1", "y1", "x2", "y2", "crop",
]  # fmt: skip


@dataclass(frozen=True)
class Evaluation:
    out: Path
    metrics: dict
    predictions: pd.DataFrame

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.json"

    @property
    def predictions_path(self) -> Path:
        return self.out / "predictions.csv"


# ---------------------------------------------------------------------------------------------------------- model


# -------------------------------------------------------------------------------------------------------- samples


@dataclass(frozen=True)
class Samples:
    """Labelled images to evaluate on: ``frame`` has path, age, gender, race (NaN when unknown), ``status`` ('ok' or
    a failure already known, e.g. 'no_face' from preparation) and ``crop`` (an aligned crop file, or '')."""

    frame: pd.DataFrame
    description: str
    read: Callable[[pd.Series], object]  # a row → what AgeEstimator.predict accepts
    cropped: bool  # rows are aligned crops (no detection)
    skipped: dict  # reason → count of files left out (no label)
    data_dir: Path | None = None  # the prepared data folder, when the samples come from one
    split: str | None = None  # its split, when the samples come from one


def samples_from(data: Path, split: str = "test", photos: bool = False) -> Samples:
    """What ``faceage evaluate --data`` names: a prepared folder (its ``split``; ``photos``: end to end), or labelled
    photos (a folder of UTKFace-named photos, or a CSV path,age[,gender,race])."""
    if (Path(data) / MANIFEST).is_file():
        return samples_from_data_dir(data, split, photos=photos)
    return samples_from_labelled(data)


def samples_from_data_dir(data: PreparedData | Path, split: str = "test", photos: bool = False) -> Samples:
    """One split of a prepared data folder. Its faces are the aligned crops made at preparation (same detection and
    alignment code as prediction); images where preparation found no face are assigned to a split by the same
    content hash and counted as failures to process. ``photos=True`` re-reads the original files from the sources
    recorded in meta.json and runs detection and alignment again, end to end."""
    data = PreparedData.of(data)
    data_dir = data.root
    rows = data.split(split, with_no_face=True)
    frame = pd.DataFrame(
        {
            "path": rows["member"],
            "key": rows["key"],
            "age": rows["age"].astype(float),
            "gender": rows["gender"].astype(float),
            "race": rows["race"].astype(float),
            "status": np.where(rows["status"] == "ok", "ok", "no_face"),
            "crop": [data.crop_path(c) for c in rows["crop"]],
        }
    )
    if photos:
        frame["status"] = "ok"
        originals = _OriginalReader(data, set(frame["key"]))
        return Samples(frame, f"{data_dir} ({split} split, original photos)", originals.read, False, {}, data_dir,
                       split)  # fmt: skip
    return Samples(frame, f"{data_dir} ({split} split, aligned crops)", lambda row: row["crop"], True, {}, data_dir,
                   split)  # fmt: skip


class _OriginalReader:
    """The original bytes of manifest rows, read once from the archive(s) recorded in meta.json."""

    def __init__(self, data: PreparedData, keys: set[str]):
        self.data = dict(data.originals(keys))

    def read(self, row: pd.Series) -> bytes:
        return self.data.get(row["key"], b"")


def samples_from_labelled(source: Path) -> Samples:
    """A CSV with columns path, age (optionally gender, race; paths relative to the CSV's folder), or a folder whose
    image files are named in UTKFace's layout (searched recursively)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _samples_from_csv(source)
    if not source.is_dir():
        raise FaceageError(f"{source}: give a prepared data folder, a folder of UTKFace-named images or a CSV file")
    if (source / MANIFEST).is_file():
        raise FaceageError(f"{source} is a prepared data folder; pass it with --data")
    rows, skipped = [], {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        if not _is_image_name(path):
            continue
        try:
            labels = parse_name(path.name)
        except BadName:
            skipped["name without UTKFace labels"] = skipped.get("name without UTKFace labels", 0) + 1
            continue
        rows.append({"path": str(path), "age": float(labels.age), "gender": float(labels.gender),
                     "race": float(labels.race), "status": "ok", "crop": ""})  # fmt: skip
    if not rows:
        raise FaceageError(
            f"{source}: no image named like UTKFace (<age>_<gender>_<race>_<datetime>.jpg); "
            "for other names give a CSV with columns path,age"
        )
    return Samples(pd.DataFrame(rows), f"{source} (photos named with labels)", lambda row: row["path"], False, skipped)


def _is_image_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".chip.jpg") or path.suffix.lower() in IMAGE_SUFFIXES


def _samples_from_csv(csv: Path) -> Samples:
    try:
        table = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FaceageError(f"{csv}: not a readable CSV ({exc}); expected columns path,age[,gender,race]") from None
    missing = {"path", "age"} - set(table.columns)
    if missing:
        raise FaceageError(
            f"{csv}: missing column(s) {', '.join(sorted(missing))}; expected path,age[,gender,race] "
            f"(found {', '.join(map(str, table.columns))})"
        )
    ages = pd.to_numeric(table["age"], errors="coerce")
    bad = table.index[ages.isna() | (ages < 0) | (ages > 130)]
    if len(bad):
        raise FaceageError(
            f"{csv}: row {bad[0] + 2} has age '{table.loc[bad[0], 'age']}'; ages must be numbers from 0 to 130 "
            f"({len(bad)} such rows)"
        )
    frame = pd.DataFrame(
        {
            "path": [str(p) if Path(str(p)).is_absolute() else str(csv.parent / str(p)) for p in table["path"]],
            "age": ages.astype(float),
            "gender": pd.to_numeric(table["gender"], errors="coerce") if "gender" in table else np.nan,
            "race": pd.to_numeric(table["race"], errors="coerce") if "race" in table else np.nan,
            "status": "ok",
            "crop": "",
        }
    )
    return Samples(frame, f"{csv} (photos listed in a CSV)", lambda row: row["path"], False, {})


# ----------------------------------------------------------------------------------------------------- prediction


def _predict_rows(
    estimator: AgeEstimator, samples: Samples, progress: Callable[[int, int], None] | None
) -> Iterator[tuple[int, Face | None, str]]:
    """(row index, the judged face or None, status) for every sample."""
    frame = samples.frame
    todo = [i for i in range(len(frame)) if frame.iloc[i]["status"] == "ok"]
    for i in range(len(frame)):
        if frame.iloc[i]["status"] != "ok":
            yield i, None, frame.iloc[i]["status"]
    done = len(frame) - len(todo)
    for start in range(0, len(todo), BATCH):
        chunk = todo[start : start + BATCH]
        if samples.cropped:
            yield from _predict_crops(estimator, samples, chunk)
        else:
            for i in chunk:
                try:
                    faces = estimator.predict(samples.read(frame.iloc[i]))
                except ImageError as exc:
                    yield i, None, f"unreadable: {exc}"
                    continue
                yield i, select_face(faces, "largest"), ("ok" if faces else "no_face")
        done += len(chunk)
        if progress:
            progress(done, len(frame))


def _predict_crops(estimator: AgeEstimator, samples: Samples, chunk: list[int]) -> Iterable[tuple]:
    frame = samples.frame
    try:
        faces = estimator.predict_batch([samples.read(frame.iloc[i]) for i in chunk], cropped=True)
    except ImageError:  # one bad file: fall back to one at a time so that only it fails
        for i in chunk:
            try:
                yield i, estimator.predict(samples.read(frame.iloc[i]), cropped=True)[0], "ok"
            except ImageError as exc:
                yield i, None, f"unreadable: {exc}"
        return
    for i, found in zip(chunk, faces, strict=True):
        yield i, found[0], "ok"


def predictions_frame(samples: Samples, results: Iterable[tuple[int, Face | None, str]], bins: AgeBins) -> pd.DataFrame:
    frame = samples.frame.copy()
    n = len(frame)
    columns = {c: np.full(n, np.nan) for c in ("age_pred", "age_low", "age_high", "bin_prob", "x1", "y1", "x2", "y2")}
    bin_pred = np.full(n, "", dtype=object)
    status = frame["status"].to_numpy(dtype=object).copy()
    for i, face, state in results:
        status[i] = state
        if face is None:
            continue
        columns["age_pred"][i], columns["age_low"][i], columns["age_high"][i] = face.age, face.age_low, face.age_high
        columns["x1"][i], columns["y1"][i], columns["x2"][i], columns["y2"][i] = face.box
        bin_pred[i] = face.bin
        columns["bin_prob"][i] = face.bin_probs[face.bin]
    frame["status"] = status
    for name, values in columns.items():
        frame[name] = values
    frame["bin"] = [bins.label(a) for a in frame["age"]]
    frame["bin_pred"] = bin_pred
    frame["abs_error"] = (frame["age_pred"] - frame["age"]).abs()
    frame["correct"] = frame["bin"] == frame["bin_pred"]
    return frame[PREDICTION_COLUMNS]


# -------------------------------------------------------------------------------------------------------- metrics


def compute_metrics(predictions: pd.DataFrame, bins: AgeBins, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Every figure of the evaluation from the predictions table (see the module docstring)."""
    processed = predictions[predictions["status"] == "ok"]
    truth = processed["age"].to_numpy(dtype=float)
    estimate = processed["age_pred"].to_numpy(dtype=float)
    true_bins = np.asarray(bins.index(truth), dtype=int) if len(truth) else np.zeros(0, dtype=int)
    pred_bins = np.array([bins.labels.index(b) for b in processed["bin_pred"]], dtype=int)
    agreement = bin_agreement(true_bins, pred_bins, len(bins))
    errors = age_errors(truth, estimate)
    correct = (true_bins == pred_bins).astype(float)
    abs_error = np.abs(estimate - truth)
    n_all = len(predictions)
    no_face = int((predictions["status"] == "no_face").sum())
    unreadable = int(predictions["status"].str.startswith("unreadable").sum())
    headline = {
        "n": len(processed),
        "acc": agreement["acc"],
        "acc_ci": bootstrap_interval(np.mean, correct, n_resamples=n_resamples, seed=seed),
        "adjacent_acc": agreement["adjacent_acc"],
        **{k: v for k, v in errors.items() if k != "n"},
        "mae_ci": bootstrap_interval(np.mean, abs_error, n_resamples=n_resamples, seed=seed),
        **interval_agreement(truth, processed["age_low"].to_numpy(float), processed["age_high"].to_numpy(float)),
    }
    all_images = {
        "n": n_all,
        "acc": float(correct.sum() / n_all) if n_all else None,
        "adjacent_acc": float((np.abs(true_bins - pred_bins) <= 1).sum() / n_all) if n_all else None,
        "cs5": float((abs_error <= 5).sum() / n_all) if n_all else None,
    }
    audit_frame = processed.assign(correct=correct.astype(bool), abs_error=abs_error)
    curve = challenge_curve(truth, estimate)  # N = 18…35, which holds the headline ages 18 and 25
    at = {rates["challenge"]: rates for rates in curve}
    return {
        "bins": bins.spec,
        "bin_labels": bins.labels,
        "counts": {
            "images": n_all,
            "processed": len(processed),
            "no_face": no_face,
            "unreadable": unreadable,
            "failure_to_process": (no_face + unreadable) / n_all if n_all else None,
        },
        "headline": headline,
        "all_images": all_images,
        "confusion": agreement["confusion"],
        "bands": band_errors(truth, estimate),
        "fairness": fairness_audit(audit_frame, n_resamples=n_resamples, seed=seed),
        "screening": {
            "teens_13_17_estimated_25_plus": at[25]["minors_13_17_passed"],
            "under_18_estimated_18_plus": at[18]["under_18_passed"],
            "adults_25_plus_estimated_under_25": at[25]["adults_25_referred"],
        },
        "challenge_curve": curve,
    }


# ------------------------------------------------------------------------------------------------------ the whole


def evaluate(
    model: str | Path | None,
    samples: Samples,
    out: Path,
    bins: str | None = None,
    seed: int = 0,
    n_resamples: int = 1000,
    progress: Callable[[int, int], None] | None = None,
    label: str | None = None,
) -> Evaluation:
    """Run the ONNX ``model`` (a file, or a shipped model's name; a training run is exported first by
    :func:`faceage.model_source.onnx_file`) on ``samples`` and write ``out``/predictions.csv and
    ``out``/metrics.json. ``label``: what the user named the model (default: ``model`` itself)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FaceageError(f"{out} is a file; give a folder for the evaluation's outputs")
    path = model_path(model)
    if path.is_dir() or path.suffix == ".ckpt":
        raise FaceageError(f"{path} is a training run; evaluation measures ONNX files: export it with 'faceage export "
                           "RUN --out model.onnx' (the faceage evaluate command does so itself)")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    label = label or str(model or "default")
    estimator = AgeEstimator(model=path, bins=bins)
    fit_on = estimator.model.metadata.fit_on
    if samples.split not in (None, "train") and samples.split in fit_on.split("+"):  # train: to see the fit
        raise FaceageError(f"{label} learnt from the {samples.split} split (fit on {fit_on}): its figures there "
                           "would not measure it; evaluate it on the test split, and calibrate a train-only model "
                           "of the same recipe instead")  # fmt: skip
    predictions = predictions_frame(samples, _predict_rows(estimator, samples, progress), estimator.bins)
    metrics = {
        "model": {"name": estimator.name, "path": label, **_model_summary(estimator)},
        "data": {
            "source": samples.description,
            "data_dir": str(samples.data_dir) if samples.data_dir else None,
            "skipped": samples.skipped,
        },
        "seed": seed,
        "bootstrap_resamples": n_resamples,
        **compute_metrics(predictions, estimator.bins, n_resamples=n_resamples, seed=seed),
    }
    atomic_write_text(out / "predictions.csv", predictions.to_csv(index=False))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    return Evaluation(out, metrics, predictions)


def _model_summary(estimator: AgeEstimator) -> dict:
    meta = estimator.model.metadata
    return {"architecture": meta.model, "members": meta.members, "version": meta.version, "fit_on": meta.fit_on,
            "age_offset": meta.offset_years, "age_mapping": (meta.age_mapping or {}).get("strength")}  # fmt: skip


def load_evaluation(folder: Path) -> Evaluation:
    folder = Path(folder)
    metrics_path, predictions_path = folder / "metrics.json", folder / "predictions.csv"
    if not metrics_path.is_file() or not predictions_path.is_file():
        raise FaceageError(f"{folder}: no metrics.json and predictions.csv; run 'faceage evaluate ... --out {folder}'")
    text_columns = ("path", "bin", "bin_pred", "crop", "status")
    predictions = pd.read_csv(predictions_path, dtype={c: object for c in text_columns})
    for column in text_columns:
        predictions[column] = predictions[column].fillna("").astype(str)
    return Evaluation(folder, json.loads(metrics_path.read_text()), predictions)
