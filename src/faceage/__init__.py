"""faceage: estimate a person's age from a face photo, offline. Age only: never gender or ethnicity."""

__version__ = "0.1.0"

from faceage.bins import AgeBins  # noqa: E402

__all__ = ["AgeBins", "AgeEstimator", "Face", "__version__"]


def __getattr__(name: str):
    # AgeEstimator and Face load ONNX Runtime and OpenCV: only when asked for, so `import faceage` stays light
    if name in ("AgeEstimator", "Face"):
        from faceage.infer import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module 'faceage' has no attribute {name!r}")
