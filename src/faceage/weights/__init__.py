"""The shipped models and the files that sit beside a model (package data; importing this is free).

Two models ship, both with int8 weights computed in float (the same answer on every CPU): ``default`` (the average of
four networks) and ``fast`` (one of them alone: a quarter of the age model's time for about a tenth of a year more
error and a point or two less bin accuracy on the test split; the measured figures are in the model cards).
Anywhere a model is asked for (``--model``, ``AgeEstimator(model=...)``), these names select them; anything else is an
ONNX file's path.
"""

from __future__ import annotations

from pathlib import Path

from faceage.errors import WeightsError

WEIGHTS = Path(__file__).resolve().parent
DEFAULT_MODEL = WEIGHTS / "faceage-default.onnx"
FAST_MODEL = WEIGHTS / "faceage-fast.onnx"
SHIPPED_MODELS = {"default": DEFAULT_MODEL, "fast": FAST_MODEL}


def model_path(model: str | Path | None) -> Path:
    """The file behind ``model``: None or "default" → the shipped default, "fast" → the shipped single network (unless
    a file of that name exists in the working folder), anything else as a path. A shipped model this install lacks
    is refused here (WeightsError)."""
    if model is not None and not isinstance(model, str | Path):
        raise WeightsError(
            f"model must be 'default', 'fast' or the path of an ONNX file from 'faceage export', not "
            f"{type(model).__name__} {model!r}"
        )
    if model is None:
        path = DEFAULT_MODEL
    elif str(model) in SHIPPED_MODELS and not Path(model).exists():
        path = SHIPPED_MODELS[str(model)]
    else:
        return Path(model)
    if not path.is_file():
        raise WeightsError(
            f"this install lacks the shipped model {path.name}; give an ONNX file exported with 'faceage export'"
        )
    return path


def calibration_path(model_path: Path) -> Path:
    """Where a model's calibration lives: ``<model>.calibration.json`` beside the ONNX file."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".calibration.json")


def card_path(model_path: Path) -> Path:
    """Where a model's card lives: ``MODEL_CARD.md`` for the shipped default, ``<model>.MODEL_CARD.md`` otherwise."""
    model_path = Path(model_path)
    if model_path.resolve() == DEFAULT_MODEL:
        return WEIGHTS / "MODEL_CARD.md"
    return model_path.with_name(model_path.stem + ".MODEL_CARD.md")
