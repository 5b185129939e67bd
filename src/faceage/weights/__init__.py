"""The shipped default model and the files that sit beside a model (package data; importing this is free)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().with_name("faceage-default.onnx")


def calibration_path(model_path: Path) -> Path:
    """Where a model's calibration lives: ``<model>.calibration.json`` beside the ONNX file."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".calibration.json")
