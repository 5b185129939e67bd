"""faceage: estimate a person's age from a face photo, offline. Age only: never gender or ethnicity."""

__version__ = "0.1.0"

from faceage.bins import AgeBins  # noqa: E402

__all__ = ["AgeBins", "__version__"]
