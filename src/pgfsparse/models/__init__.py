"""Model builders. Each returns a plain timm / Hugging Face model; sparsity is attached afterwards."""

from pgfsparse.models.t5 import build_t5
from pgfsparse.models.vision import build_vision_model

__all__ = ["build_t5", "build_vision_model"]
