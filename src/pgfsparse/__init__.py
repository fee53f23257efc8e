"""pgfsparse: train transformers with N:M structured sparsity and Progressive Gradient Flow.

The engine below imports only torch; the CLI, trainer and model builders import
Hydra, timm, transformers and W&B where they are used.
"""
from .sparsity import *  # noqa: F401,F403
from .sparsity import __all__

__version__ = "0.1.0"


def __getattr__(name):
    # load_compressed lives in pgfsparse.export (safetensors, timm/transformers when rebuilding):
    # imported on first use, so `import pgfsparse` still imports only torch.
    if name == "load_compressed":
        from .export.load import load_compressed

        return load_compressed
    raise AttributeError(f"module 'pgfsparse' has no attribute {name!r}")
