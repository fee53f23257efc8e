"""pgf-export: a trained run -> one small file (compressed N:M) or a plain timm / Hugging Face export.

    pgf-export RUN_DIR_OR_CHECKPOINT [--out FILE] [--dtype fp32|fp16|bf16] [--format compressed|timm|hf] [--check]

Exit codes: 0 written (and checked); 1 --check found a difference; 2 bad input, one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

from pgfsparse.rundir.layout import RunDir

DEFAULT_OUT = {"compressed": "model.nm.safetensors", "timm": "model.timm.safetensors", "hf": "hf"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pgf-export", description=__doc__.splitlines()[0])
    parser.add_argument("target", help="a pgf-train run dir, or its checkpoint.pt")
    parser.add_argument("--out", help="output file (a folder for --format hf); default: inside the run dir")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], help="cast floating tensors (default: as trained)")
    parser.add_argument("--format", default="compressed", choices=list(DEFAULT_OUT))
    parser.add_argument(
        "--check",
        action="store_true",
        help="reload the export and compare it with the run's strict model on one fixed batch",
    )
    args = parser.parse_args(argv)
    code = run(args)
    if argv is None:
        sys.exit(code)
    return code


def run(args) -> int:
    from pgfsparse.errors import CheckpointError, ConfigError, DataError
    from pgfsparse.export.builders import BuilderError
    from pgfsparse.export.format import ExportFileError

    try:
        return _export(args)
    except (CheckpointError, ConfigError, DataError, ExportFileError, BuilderError) as error:
        from pgfsparse.errors import first_line

        print(f"pgf-export: error: {first_line(error)}", file=sys.stderr)
        return 2


def _export(args) -> int:
    from pgfsparse.export import format as fmt
    from pgfsparse.export.plain import export_hf, export_timm
    from pgfsparse.export.run import forward, load_run
    from pgfsparse.export.strict import export_compressed, strict_weights

    run = load_run(args.target)
    out = Path(args.out) if args.out else run.run_dir / DEFAULT_OUT[args.format]
    dtype = fmt.parse_dtype(args.dtype)
    if args.format == "compressed":
        sizes = export_compressed(run.sparsifier, out, run.builder, args.dtype, source=str(run.run_dir))
        print(f"pgf-export: wrote {out}")
        print(describe(sizes, dtype))
    elif args.format == "timm":
        spec = export_timm(strict_weights(run.sparsifier)[0], run.builder, out, dtype)
        print(f"pgf-export: wrote {out} ({mb(out.stat().st_size)}) and {spec}")
    else:
        export_hf(
            strict_weights(run.sparsifier)[0], run.builder, out, dtype, tokenizer_dir=RunDir(run.run_dir).tokenizer
        )
        print(f"pgf-export: wrote {out}/ ({mb(sum(f.stat().st_size for f in out.iterdir()))})")
    if not args.check:
        return 0
    reference = _reference(run, dtype)
    reloaded = forward(_reload(out, args.format, run.builder), run.batch, dtype)
    if torch.equal(reloaded, reference):
        print(
            f"pgf-export: check passed: the reloaded export's outputs on {len(_rows(run.batch))} fixed examples "
            "equal the run's strict model bit for bit"
        )
        return 0
    diff = (reloaded.float() - reference.float()).abs().max().item() if reloaded.shape == reference.shape else "shape"
    print(
        f"pgf-export: check FAILED: the reloaded export differs from the run's strict model (max |diff| {diff})",
        file=sys.stderr,
    )
    return 1


def _reference(run, dtype):
    """The run's strict model on the fixed batch; in another dtype, the strict weights cast to it."""
    from pgfsparse.export.builders import build
    from pgfsparse.export.run import forward
    from pgfsparse.export.strict import strict_weights

    if dtype in (None, torch.float32):
        with run.sparsifier.strict():
            return forward(run.model, run.batch)
    model = build(run.builder)
    model.load_state_dict(strict_weights(run.sparsifier)[0])
    return forward(model.to(dtype).eval(), run.batch, dtype)


def _reload(out: Path, kind: str, builder):
    if kind == "compressed":
        from pgfsparse.export.load import load_compressed

        return load_compressed(out)
    if kind == "timm":
        import timm
        from safetensors.torch import load_file

        model = timm.create_model(builder["name"], pretrained=False, **builder["kwargs"])
        state = load_file(str(out))
        model.to(next(iter(state.values())).dtype).load_state_dict(state)
        return model.eval()
    import transformers

    # The run used `attn_implementation` (eager for pgf-train's T5); from_pretrained's default (sdpa) differs
    # from it in the last bits, so the check loads with the run's.
    impl = {"attn_implementation": builder["attn_implementation"]} if builder.get("attn_implementation") else {}
    return getattr(transformers, builder["class"]).from_pretrained(str(out), **impl).eval()


def _rows(batch):
    return batch["input_ids"] if isinstance(batch, dict) else batch[0]


def mb(size: float) -> str:
    return f"{size / 1e6:.3f} MB"


def describe(sizes, dtype=None) -> str:
    """The size lines: file vs dense vs theoretical, then per location."""
    lines = [
        f"  size on disk {mb(sizes.file)}; dense {mb(sizes.dense)} ({sizes.dense / sizes.file:.2f}x the file); "
        f"theoretical {mb(sizes.theoretical)} (file = {sizes.file / sizes.theoretical:.4f}x theoretical)"
    ]
    for location, part in sizes.parts.items():
        lines.append(
            f"  {location}: stored {mb(part['stored'])}, theoretical {mb(part['theoretical'])} "
            f"({part['stored'] / part['theoretical'] - 1:+.3%}), dense {mb(part['dense'])}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
