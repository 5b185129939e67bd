"""The shipped models and the files that sit beside a model (package data; importing this is free).

Two models ship, both with int8 weights computed in float (the same answer on every CPU): ``default`` (dlib's
face-recognition network fine-tuned for age, 150 px) and ``fast`` (one Cydral ResNet-10 at 64 px: less of the age
model's time for about four tenths of a year more error on the test split; the measured figures are in the model
cards). Third-party starting weights are read from their installed packages (:func:`installed_package_file`).
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


def installed_package_file(package: str, relative: str, install: str, reinstall: str) -> Path:
    """A file shipped inside the installed ``package`` (found without importing it); ``install`` and ``reinstall``
    say how to get the package, or get it whole again, when it or the file is missing."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"this needs a file of the '{package}' package, which is not installed: {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the '{package}' package; reinstall it: {reinstall}")
    return path


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
