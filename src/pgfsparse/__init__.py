"""pgfsparse: train transformers with N:M structured sparsity and Progressive Gradient Flow.

The engine below imports only torch; the CLI, trainer and model builders import
Hydra, timm, transformers and W&B where they are used.
"""

from pgfsparse.sparsity import *  # noqa: F401,F403
from pgfsparse.sparsity import __all__ as __all__  # the package's public names are the engine's

try:  # the version has one home: pyproject.toml, read back from the installed metadata
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("pgfsparse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


def __getattr__(name):
    # load_compressed lives in pgfsparse.export (safetensors, timm/transformers when rebuilding):
    # imported on first use, so `import pgfsparse` still imports only torch.
    if name == "load_compressed":
        from pgfsparse.export.load import load_compressed

        return load_compressed
    raise AttributeError(f"module 'pgfsparse' has no attribute {name!r}")
