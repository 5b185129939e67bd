"""Inference on ONNX Runtime (no torch): AgeEstimator and Face."""

from faceage.infer.estimator import AgeEstimator, Face

__all__ = ["AgeEstimator", "Face"]
