"""pgfsparse: train transformers with N:M structured sparsity and Progressive Gradient Flow.

The engine below imports only torch; the CLI, trainer and model builders import
Hydra, timm, transformers and W&B where they are used.
"""
from .sparsity import *  # noqa: F401,F403
from .sparsity import __all__

__version__ = "0.1.0"
