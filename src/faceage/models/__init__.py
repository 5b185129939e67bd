"""Architectures only (torch): the study's ladder, a residual CNN, the transfer backbone, each registered by name
(registry.py). Importing the package registers them all; their training recipes live in faceage.train.recipes."""

from faceage.models import dlib_face, resnet, seed, transfer  # noqa: F401  (registers the models)
from faceage.models.registry import ModelInfo, count_parameters, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "count_parameters", "get_model_info", "list_models", "register_model"]
