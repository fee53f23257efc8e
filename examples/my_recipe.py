# pgf-train data=digits sparsity=1:4 recipe=custom recipe.target=examples/my_recipe.py:DecayingSRSTE +recipe.final_fraction=0.1
"""A recipe of your own: SR-STE whose lambda falls linearly to `final_fraction` of itself over the sparse phase.

In Python: pgfsparse.sparsify(model, "1:4", recipe=DecayingSRSTE(final_fraction=0.1), total_steps=T).
"""
from dataclasses import dataclass

import pgfsparse


@dataclass(frozen=True)
class DecayingSRSTE(pgfsparse.Recipe):
    name = "decaying_srste"
    summary = "SR-STE with lambda decaying linearly over the sparse phase"

    srste_lambda: float = 2e-4  # lambda at the first sparse step
    final_fraction: float = 0.1  # ... and this fraction of it from the fine-tune on

    def check(self):
        super().check()
        if self.srste_lambda < 0 or not 0 <= self.final_fraction <= 1:
            self.fail("srste_lambda must be >= 0 and final_fraction in [0, 1]")

    def extra_gradient(self, j, schedule):
        progress = min(j / max(schedule.sparse_steps, 1), 1.0)
        return self.srste_lambda * (1 - (1 - self.final_fraction) * progress)
