"""Exceptions for user errors: each message says what was wrong and what to do."""

from __future__ import annotations


class FaceageError(Exception):
    """Base class of every error faceage raises for bad input or a bad setup."""


class BinsError(FaceageError, ValueError):
    """An age-bin specification that cannot be used (gap, overlap, unordered, unparsable)."""


class ImageError(FaceageError):
    """An image that cannot be read (corrupt, truncated, not an image, too many pixels)."""


class SourceError(FaceageError):
    """A data source (archive or folder) that cannot be read."""


class WeightsError(FaceageError):
    """Model weights that cannot be found or loaded."""


class UnsupportedImageError(ImageError):
    """Input that is not an image at all, or in a format faceage cannot read (empty, text, PDF, ...)."""
