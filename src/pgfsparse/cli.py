"""pgf-train: Hydra composes conf/ into a run; the shared Trainer executes it.

    pgf-train model=vit sparsity=1:16 recipe=decay
    pgf-train -m sparsity=2:4,1:16 recipe=srste,decay
"""
from __future__ import annotations

import sys
from typing import Optional

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="pkg://pgfsparse.conf", config_name="train")
def main(cfg: DictConfig) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from .checkpoint import CheckpointError
    from .data import DataError
    from .trainer import Trainer
    from .validation import ConfigError, Contradiction, to_train_config

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = cfg.get("output_dir") or cfg.get("resume") or hydra_cfg.runtime.output_dir
    sweep_name = hydra_cfg.sweep.dir.rstrip("/").split("/")[-1] if multirun else None
    try:
        train_cfg = to_train_config(cfg)
        trainer = Trainer(train_cfg, run_dir, choices=dict(hydra_cfg.runtime.choices), sweep_name=sweep_name)
        summary = trainer.fit()
    except Contradiction as error:
        if multirun:  # a grid's impossible corner: skip it rather than run a duplicate
            print(f"pgf-train: skipping job {hydra_cfg.job.num}: {error}", file=sys.stderr)
            return None
        _fail(error)
    except (ConfigError, CheckpointError, DataError) as error:
        _fail(error)
    if trainer.process.is_main:
        bleu = summary["eval"].get("eval/bleu")
        also = f" (BLEU {bleu:.2f} / {summary['eval']['eval_strict/bleu']:.2f})" if bleu is not None else ""
        print(f"pgf-train: {summary['eval_metric']} {summary['eval_value']:.2f} as trained, "
              f"{summary['eval_value_strict']:.2f} strict N:M{also}; {summary['steps']} steps, "
              f"{summary['train_flops']:.3g} training FLOPs, {summary['wall_seconds']:.0f}s -> {summary['run_dir']}")
    return summary["eval_value"]


def _fail(error: Exception) -> None:
    print(f"pgf-train: error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
