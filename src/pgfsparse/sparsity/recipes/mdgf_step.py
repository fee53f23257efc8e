"""mdgf_step: Kao et al.'s decaying mask, D = max(1 - k w, 0) after k mask updates, one every interval.

Their code forces D = 0 from update `max_updates` on, and refreshes the mask at
each update (so this recipe's refresh period is its update interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

from pgfsparse.sparsity.recipes.mask_decay import MaskDecay
from pgfsparse.sparsity.recipes.registry import register


@register
@dataclass(frozen=True)
class MDGFStep(MaskDecay):
    name = "mdgf_step"
    summary = "Kao et al.'s decaying mask: D = max(1 - k*w, 0) after k interval-wise mask updates"

    step_weight: Optional[float] = None  # w: D drops by w per update; None = 1 / max_updates
    step_interval: Optional[int] = None  # steps per update; None = D reaches 0 at decay_end_fraction
    max_updates: int = 16  # D is forced to 0 from this update on (as in Kao et al.'s code)

    def check(self) -> None:
        super().check()
        if self.step_weight is not None and not 0.0 < self.step_weight <= 1.0:
            self.fail(f"step_weight={self.step_weight} must lie in (0, 1]")
        if self.step_interval is not None and self.step_interval < 1:
            self.fail(f"step_interval={self.step_interval} must be >= 1")
        if self.max_updates < 1:
            self.fail(f"max_updates={self.max_updates} must be >= 1")

    def plan(self, schedule) -> Dict[str, float]:
        weight = self.step_weight or 1.0 / self.max_updates
        updates_to_zero = min(self.max_updates, math.ceil(1.0 / weight))
        interval = self.step_interval or max(1, math.ceil(self.decay_steps(schedule) / max(updates_to_zero - 1, 1)))
        return {"step_weight": weight, "step_interval": interval}

    def decay(self, j: int, schedule) -> float:
        updates = j // schedule.step_interval + 1  # mask updates so far, this one included
        if updates >= self.max_updates:
            return 0.0
        return max(1.0 - updates * schedule.step_weight, 0.0)

    def refresh_period(self, schedule) -> int:
        return schedule.step_interval
