"""What the commands print: rich tables built from the results the modules return (the CLI only prints them).

The figures are written by :mod:`faceage.evaluate.formatting`, the same cells the HTML report and the model card use.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from faceage.evaluate.formatting import accuracy_cell, mae_cell, num, pct, with_interval


def _table(title: str, columns: tuple[str, ...], justify: str = "left") -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify=justify)
    return table


def show_evaluation(console: Console, metrics: dict) -> None:
    """An evaluation's metrics.json: headline, failures, bands, the fairness audit, screening."""
    head, counts, every = metrics["headline"], metrics["counts"], metrics["all_images"]
    table = _table(f"{metrics['model']['name']} on {metrics['data']['source']}",
                   ("metric", f"{head['n']} processed faces", f"all {every['n']} images (failures = errors)"),
                   "right")  # fmt: skip
    table.add_row("bin accuracy (95% CI)", accuracy_cell(head), pct(every["acc"]))
    table.add_row("±1-bin accuracy", pct(head["adjacent_acc"]), pct(every["adjacent_acc"]))
    table.add_row("MAE, years (95% CI)", mae_cell(head), "")
    table.add_row("median absolute error", num(head["median_ae"]), "")
    table.add_row("CS@5 (within ±5 years)", pct(head["cs5"]), pct(every["cs5"]))
    table.add_row("mean signed error", num(head["mean_signed"], "+.2f"), "")
    if head.get("interval_coverage") is not None:  # evaluations written before it was measured lack it
        table.add_row("true age inside the 80% interval (below / above)",
                      f"{pct(head['interval_coverage'])} ({pct(head['interval_below'])} / "
                      f"{pct(head['interval_above'])})", "")  # fmt: skip
        table.add_row("80% interval: mean width, years", num(head["interval_width"]), "")
    console.print(table)
    console.print(
        f"failure to process: {pct(counts['failure_to_process'])} ({counts['no_face']} no face, "
        f"{counts['unreadable']} unreadable of {counts['images']})"
    )
    bands = _table("by true age band (bias > 0: estimated older)", ("band", "faces", "MAE", "bias"), "right")
    for row in metrics["bands"]:
        bands.add_row(row["band"], str(row["n"]), num(row["mae"]), num(row["bias"], "+.2f"))
    console.print(bands)
    for name, audit in metrics["fairness"].items():
        groups = _table(f"by {name} (audit only; 95% bootstrap intervals)", ("group", "faces", "bin acc", "MAE"),
                        "right")  # fmt: skip
        for row in audit["groups"]:
            groups.add_row(row["group"], str(row["n"]), with_interval(row["acc"], (row["acc_low"], row["acc_high"])),
                           with_interval(row["mae"], (row["mae_low"], row["mae_high"]), num))  # fmt: skip
        console.print(groups)
        for key in ("acc_spread", "mae_spread"):
            spread = audit[key]
            if spread:
                value = pct(spread["spread"]) if key == "acc_spread" else num(spread["spread"])
                console.print(f"  {spread['metric']} spread {value}: {spread['lowest']} lowest, "
                              f"{spread['highest']} highest (groups of ≥ {spread['min_n']} faces)")  # fmt: skip
    screening = metrics["screening"]
    console.print(
        f"screening: 13-17 estimated 25+ {pct(screening['teens_13_17_estimated_25_plus'])}; under-18s estimated 18+ "
        f"{pct(screening['under_18_estimated_18_plus'])}; adults 25+ estimated under 25 "
        f"{pct(screening['adults_25_plus_estimated_under_25'])}"
    )


def show_training_summary(console: Console, summary: dict) -> None:
    """A run's summary.json: accuracy and MAE per split, test errors by age band, size and time."""
    fit_on = summary.get("fit_on", "train")
    which = "final weights" if fit_on == "train+val" else "best checkpoint"
    table = _table(f"{summary['model']}: {which} (epoch {summary['best_epoch']}), fit on {fit_on}",
                   ("split", "faces", "bin accuracy", "MAE (years)"), "right")  # fmt: skip
    for split in ("train", "val", "test"):
        if f"{split}_n" not in summary:  # a train+val run has no unseen validation faces
            continue
        table.add_row(split, str(summary[f"{split}_n"]), pct(summary[f"{split}_acc"]), num(summary[f"{split}_mae"]))
    console.print(table)
    bands = _table("test errors by true age band (bias > 0: aged up)", ("band", "faces", "MAE", "bias"), "right")
    for row in summary["test_bands"]:
        bands.add_row(row["band"], str(row["n"]), num(row["mae"]), num(row["bias"], "+.2f"))
    console.print(bands)
    console.print(f"{summary['parameters']:,} parameters, {summary['train_minutes']:.1f} min of training")


def detections_table(results: dict) -> Table:
    """``faceage detect``: the faces found in each image, or why it could not be read."""
    table = _table("faces found", ("image", "faces", "face", "box (x1, y1, x2, y2)", "score"))
    for name, result in results.items():
        if "error" in result:
            table.add_row(name, "-", "", f"[red]{result['error']}[/]", "")
            continue
        faces = result["faces"]
        if not faces:
            table.add_row(name, "0", "", "no face", "")
        for i, face in enumerate(faces):
            box = ", ".join(f"{v:.0f}" for v in face["box"])
            table.add_row(
                name if i == 0 else "", str(len(faces)) if i == 0 else "", str(i), box, f"{face['score']:.3f}"
            )
    return table


def demo_table(rows: list[dict], out: Path) -> Table:
    table = _table(f"faceage demo: ages (written to {out})", ("photo", "face", "age", "80% interval", "bin", "p(bin)"))
    for row in rows:
        if row["error"]:
            table.add_row(str(row["path"]), "", "", "", "", row["error"])
        else:
            interval = f"{row['age_low']:.0f}-{row['age_high']:.0f}"
            table.add_row(str(row["path"]), str(row["face"]), f"{row['age']:.1f}", interval, row["bin"],
                          f"{row['bin_prob']:.2f}")  # fmt: skip
    return table


def ages_table(rows: list[dict]) -> Table:
    """``faceage predict`` without --out: the rows of :func:`faceage.infer.predict.rows_for`."""
    table = _table("ages", ("path", "face", "age", "80% interval", "bin", "p(bin)", "error"))
    for row in rows:
        interval = f"{row['age_low']}-{row['age_high']}" if row["error"] == "" else ""
        table.add_row(str(row["path"]), str(row["face"]), str(row["age"]), interval, str(row["bin"]),
                      str(row["bin_prob"]), str(row["error"]))  # fmt: skip
    return table


def frame_table(title: str, frame) -> Table:
    """A pandas frame as it is (``faceage explore``'s faces per bin and split)."""
    table = _table(title, tuple(str(c) for c in frame.columns), "right")
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    return table


def models_table(models: list, parameters: list[int]) -> Table:
    """``faceage models``: the registry, with each model's parameter count."""
    table = _table("faceage models", ("name", "predicts", "input", "parameters", "study (val acc)", "description"))
    for info, count in zip(models, parameters, strict=True):
        p = info.preprocessing
        predicts = "ages 0-100 (distribution)" if info.predicts_ages else "age bins (cross-entropy)"
        table.add_row(info.name, predicts, f"{p.input_size}px, crop {p.crop_fraction:.0%}", f"{count:,}",
                      info.study or "-", info.description)  # fmt: skip
    return table


def check_table(min_age: float, challenge: float, results: list[tuple[str, dict]]) -> Table:
    """``faceage check``: each photo's outcome."""
    table = _table(f"age check: min age {min_age:g}, challenge {challenge:g}",
                   ("photo", "outcome", "age", "80% interval", "reason"))  # fmt: skip
    for photo, result in results:
        interval = f"{result['age_low']}-{result['age_high']}" if result["age"] is not None else ""
        table.add_row(photo, result["outcome"], "" if result["age"] is None else str(result["age"]), interval,
                      result["reason"])  # fmt: skip
    return table


def calibration_table(calibration, max_minor_pass: float, split: str) -> Table:
    """``faceage calibrate``: the chosen challenge age per minimum age and its measured rates."""
    table = _table(f"challenge ages for at most {max_minor_pass:.1%} of minors passed ({split} split)",
                   ("min age", "challenge age", "minors passed (95% CI)", "adults referred (95% CI)"),
                   "right")  # fmt: skip
    for key, r in calibration.screening.items():
        table.add_row(key, f"{r['challenge']:g}",
                      f"{with_interval(r['minors_passed'], r['minors_passed_ci'])} of {r['n_minors']} aged "
                      f"{r['minor_ages']}",
                      f"{with_interval(r['adults_referred'], r['adults_referred_ci'])} of {r['n_adults']}")  # fmt: skip
    return table


def groups_table(frame) -> Table:
    """``faceage groups``: faces per estimated age group."""
    table = _table("faces per estimated age group", ("age group", "faces", "share"), "right")
    for _, row in frame.iterrows():
        table.add_row(row["bin"], str(row["faces"]), pct(row["share"]))
    return table


def show_prepared(console: Console, summary, out: Path) -> None:
    """``faceage prepare``: files per status, the split, the speed, and where the unusable files are listed."""
    table = _table(f"prepared {summary.total} files into {out}", ("status", "files", "share"), "right")
    for status, n in sorted(summary.status_counts.items(), key=lambda kv: -kv[1]):
        table.add_row(status, str(n), pct(n / max(summary.total, 1)))
    console.print(table)
    console.print("split: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.split_counts.items())))
    console.print(
        f"{summary.processed_now} files processed in {summary.seconds:.1f} s "
        f"({summary.images_per_second:.1f} images/s){f', {summary.resumed} resumed' if summary.resumed else ''}; "
        f"no face detected in {summary.no_face_share:.2%} of named, readable images"
    )
    bad = summary.total - summary.status_counts.get("ok", 0)
    if bad:
        console.print(f"{bad} files not usable for training: see {out / 'quality.csv'}")


def show_golden(console: Console, err_console: Console, reports: list) -> bool:
    """``faceage selftest``: each model file's golden outputs reproduced on this machine, or not, and why; True when
    every one is."""
    from faceage.infer.golden import AGE_TOLERANCE, mismatch_cause

    table = _table("golden outputs: this machine against the stored reference",
                   ("model file", "images", "faces", "largest age change", "verdict"))  # fmt: skip
    for report in reports:
        verdict = "reproduced" if report.ok else "[bold red]DIFFERENT[/]"
        table.add_row(report.path.name, str(len(report.images)), str(report.faces), f"{report.age_change:.3f} years",
                      verdict)  # fmt: skip
    console.print(table)
    for report in reports:
        if report.not_here:
            console.print(f"{report.model}: {len(report.not_here)} stored photo(s) not checked (not in --photos): "
                          + ", ".join(report.not_here))  # fmt: skip
        for image in report.images:
            if not image.ok:
                console.print(f"{report.model} · {image.image}: {image.problem}")
    failed = [report for report in reports if not report.ok]
    for report in failed:
        err_console.print(f"[bold red]{report.model} does not reproduce its reference answers on this machine:"
                          f"[/] {mismatch_cause(report.path)}")  # fmt: skip
    if not failed:
        console.print(f"this machine reproduces every stored answer within {AGE_TOLERANCE} years: the figures "
                      "measured with these files hold here")  # fmt: skip
    return not failed


def show_export(console: Console, report, out: Path) -> None:
    """``faceage export``: parity with torch, the int8 change, the kernels' agreement, the age correction, the
    file."""
    console.print(f"parity with PyTorch on 8 random inputs: max abs difference {report.parity:.2e}")
    if (change := report.quantization) is not None:
        console.print(
            f"int8 vs float on {change.faces} validation faces: estimates move by {change.mean_age_change:.2f} years "
            f"on average (at most {change.max_age_change:.2f}; {change.mean_signed_change:+.2f} on balance); top "
            f"class unchanged for {change.same_top_class:.1%}"
        )
    if (kernels := report.kernels) is not None:
        console.print(
            f"int8 file run by this CPU vs computed as written: {kernels.mean_change:.4f} years on average (99% within "
            f"{kernels.p99_change:.4f}): float arithmetic, the same answer on every CPU"
        )
    if (correction := report.correction) is not None:
        console.print(f"{correction.describe()}, measured on {correction.faces} faces of {correction.source}: MAE "
                      f"there {correction.mae_before:.3f} -> {correction.mae_after:.3f}")  # fmt: skip
    meta = report.metadata
    console.print(f"golden outputs stored for {report.golden_faces} faces ('faceage selftest --model {out}')")
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {meta.model}, bins {meta.bins}")


def show_predict_end(err_console: Console, summary, rows: int, notes: list[str], problems: list[str],
                     out: str | None, interrupted_of: int | None = None) -> int:  # fmt: skip
    """``faceage predict``'s closing lines on stderr (notes, warnings, the summary, or how far an interrupted run
    got: ``interrupted_of`` inputs, 0 when not known) and its exit status: 130 interrupted, 2 when an input could not
    be read or an annotated copy not written, else 0."""
    for note in notes:
        err_console.print(f"note: {note}")
    for problem in problems:
        err_console.print(f"[yellow]warning:[/] {problem}")
    if interrupted_of is not None:
        where = f"; wrote their {rows} row(s) to {out}" if out else ""
        err_console.print(f"[bold red]interrupted[/] after {summary.inputs} of {interrupted_of or '?'} input(s)"
                          f"{where}: {summary.line()}")  # fmt: skip
        return 130
    err_console.print(summary.line() + (f"; wrote {out}" if out else ""))
    return 2 if problems else summary.exit_code


def show_judgement(console: Console, result, as_json: bool = False) -> None:
    """``faceage gap`` (:class:`~faceage.check.GapResult`) or ``faceage recency`` (its outcome and reason), or
    either as JSON."""
    import json

    if as_json:
        console.print_json(json.dumps(result.to_dict()))
    elif hasattr(result, "gap"):
        console.print(f"apparent age {result.age:.1f} (80% interval {result.age_low:.1f}-{result.age_high:.1f}), "
                      f"stated {result.stated_age:g}: gap {result.gap:+.1f} years ({result.gap_low:+.1f} to "
                      f"{result.gap_high:+.1f})")  # fmt: skip
        console.print(result.verdict)
        console.print("This is not a medical test: apparent age depends on light, pose, make-up and the camera.")
    else:
        console.print(f"[bold]{result.outcome}[/]: {result.reason}")
