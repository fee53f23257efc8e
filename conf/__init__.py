"""pgf-train's Hydra configs, shipped as the package `pgfsparse.conf`.

Importing it registers the typed schema (pgfsparse.config.TrainConfig) as
`train_schema`, the base that conf/train.yaml composes onto: every key exists
(so `sparsity.qk=1:4` needs no `+`) and types are checked at composition.
"""
from hydra.core.config_store import ConfigStore

from pgfsparse.config import TrainConfig

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
