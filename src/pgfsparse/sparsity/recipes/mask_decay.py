"""What the mask-decay recipes share: D falls from 1 towards 0 over the sparse phase.

While D > 0 pruned weights still take part in the forward (W~ = W * (mask + D (1 - mask))),
so the FLOP counter charges such a step as dense. `decay_end_fraction` says when D should
be (about) gone, counted from step 0, so a schedule written this way does not depend on
the batch size or the run length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional

from pgfsparse.sparsity.recipes.base import Recipe

if TYPE_CHECKING:  # pragma: no cover
    from pgfsparse.sparsity.schedule import Schedule


@dataclass(frozen=True)
class MaskDecay(Recipe):
    """Base of mdgf_linear, mdgf_exp and mdgf_step (not a recipe by itself)."""

    decays = True

    decay_end_fraction: float = 0.7  # D reaches ~0 at this fraction of all steps, counted from step 0

    def check(self) -> None:
        super().check()
        if self.derives_rate and self.decay_end_fraction <= self.dense_fraction:
            self.fail(
                f"decay_end_fraction={self.decay_end_fraction} must exceed dense_fraction={self.dense_fraction} "
                "(it counts from step 0, not from the end of the dense phase)"
            )

    @property
    def derives_rate(self) -> bool:
        """Whether the decay rate comes from decay_end_fraction (rather than a given value)."""
        return True

    def decay_steps(self, schedule: "Schedule") -> float:
        """Sparse steps from the first sparse step to decay_end_fraction of the run."""
        return self.decay_end_fraction * schedule.total_steps - schedule.dense_steps


@dataclass(frozen=True)
class RateDecay(MaskDecay):
    """Base of mdgf_linear and mdgf_exp: D = f(beta * j), beta given or derived from epsilon."""

    beta: Optional[float] = None  # per-step decay rate; None = derived from decay_end_fraction
    decay_epsilon: float = 1e-3  # the D reached at decay_end_fraction when beta is derived

    def check(self) -> None:
        super().check()
        if self.beta is not None and self.beta < 0:
            self.fail(f"beta={self.beta} must be >= 0")
        if not 0.0 < self.decay_epsilon < 1.0:
            self.fail(f"decay_epsilon={self.decay_epsilon} must lie in (0, 1)")

    @property
    def derives_rate(self) -> bool:
        return self.beta is None

    def plan(self, schedule: "Schedule") -> Dict[str, float]:
        if self.beta is not None:
            return {"beta": self.beta}
        return {"beta": self.rate_for(max(self.decay_steps(schedule), 1.0))}

    def rate_for(self, decay_steps: float) -> float:
        """beta such that D falls to decay_epsilon after `decay_steps` sparse steps."""
        raise NotImplementedError


def exp_rate(epsilon: float, steps: float) -> float:
    return -math.log(epsilon) / steps
