"""Model builders. Each returns a plain timm / Hugging Face model; sparsity is attached afterwards."""
from .vision import build_vision_model

__all__ = ["build_vision_model"]
