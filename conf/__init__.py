"""pgf-train's Hydra configs, shipped as the package `pgfsparse.conf`.

Importing it registers the typed schema (pgfsparse.config.schema.TrainConfig) as
`train_schema`, the base that conf/train.yaml composes onto: every key exists
(so `sparsity.qk=1:4` needs no `+`) and types are checked at composition. It
also registers the resolvers that name sweep and run folders.
"""
from hydra.core.config_store import ConfigStore

from pgfsparse.config.schema import TrainConfig, recipe_config_nodes
from pgfsparse.sweeps.resolvers import register_resolvers

ConfigStore.instance().store(name="train_schema", node=TrainConfig)
for option, node in recipe_config_nodes().items():  # recipe=<name>: built from the recipe classes, not YAML
    ConfigStore.instance().store(group="recipe", name=option, node=node)
register_resolvers()  # ${pgf_run_name:}: train.yaml's hydra.sweep.subdir
