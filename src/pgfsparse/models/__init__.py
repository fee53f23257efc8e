"""Model builders. Each returns a plain timm / Hugging Face model; sparsity is attached afterwards.

`model.checkpoint` (a pgf-train run's weights) is loaded into any of them by the run, before
sparsity is attached (`start_weights.load_start_weights`).
"""

from pgfsparse.models.causal_lm import build_causal_lm
from pgfsparse.models.start_weights import load_start_weights
from pgfsparse.models.t5 import build_t5
from pgfsparse.models.vision import build_vision_model

__all__ = ["build_causal_lm", "build_t5", "build_vision_model", "load_start_weights"]
