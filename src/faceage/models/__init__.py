"""Architectures only (torch): the study's ladder, a residual CNN, the transfer backbone. See registry.py."""

from faceage.models.registry import ModelInfo, Recipe, count_parameters, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "Recipe", "count_parameters", "get_model_info", "list_models", "register_model"]
