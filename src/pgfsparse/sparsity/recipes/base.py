"""The Recipe base class: what every recipe decides, as pure functions of the step.

A recipe is a frozen dataclass whose fields are its knobs (typed, with their
defaults and checks here or in its own file). The Schedule, the Sparsifier and
the FLOP counter ask it questions and never look at its name:

    plan(schedule)                  values fixed once the run length is known (e.g. MDGF's beta)
    decay(j, schedule)              D during the sparse phase (0 = binary masks)
    ladder_for(target)              the N:M rungs from the first sparse step to the target
    fit_ladder(ladder, target, g)   the ladder of one layer whose rows hold g weights
    rung(j, n_rungs, schedule)      which rung is in force at sparse step j
    refresh_period(schedule)        optimizer steps between mask refreshes
    extra_gradient(j, schedule)     lambda of an added lambda * (1 - mask) * W gradient (SR-STE)
    straight_through                whether pruned weights get the gradient at all (a class constant)
    charged_density(...)            the density the FLOP counter charges at a step

`j` counts sparse steps: 0 at the first step after the dense warm-up. The
phases themselves (dense warm-up, sparse, binary-mask fine-tune) are common to
every recipe and live in schedule.py.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Dict, List, NoReturn, Optional, Sequence, Type

from pgfsparse.sparsity.pattern import NM

if TYPE_CHECKING:  # pragma: no cover
    from pgfsparse.sparsity.schedule import Schedule


@dataclass(frozen=True)
class Recipe:
    """A training recipe. Subclass it, give it a `name`, and override what differs (examples/my_recipe.py)."""

    name: ClassVar[str] = "recipe"  # what pgf-train's recipe= and summaries call it
    summary: ClassVar[str] = ""  # one line for --help, errors and the docs' recipe table
    sparse: ClassVar[bool] = True  # False only for the dense baseline
    decays: ClassVar[bool] = False  # D may be > 0 after the dense phase (W~ is then dense)
    # True: straight-through, dL/dW = dL/dW~ for every weight (STE, SR-STE, MDGF, SDGF); False: the mask's
    # zeros block the gradient of pruned weights (dL/dW = mask * dL/dW~: the fixed-mask baseline)
    straight_through: ClassVar[bool] = True

    dense_fraction: float = 0.05  # dense warm-up; paper ablations: 1.25-10% all work
    finetune_fraction: float = 0.15  # binary-mask fine-tune at the end; paper ablations: 10-20%
    mask_interval: Optional[int] = None  # optimizer steps between mask refreshes; None = 1 (the paper)

    def __post_init__(self) -> None:
        self.check()

    # -- knobs --------------------------------------------------------------------
    def check(self) -> None:
        """Refuse bad knobs in one line; subclasses add theirs and call super().check().

        Every knob named `*_fraction`, of every recipe and plug-in, is checked here to lie in [0, 1].
        """
        for knob in (f.name for f in fields(self) if f.name.endswith("_fraction")):
            value = getattr(self, knob)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                self.fail(f"{knob}={value} is out of range: set {knob} in [0, 1]")
        if self.dense_fraction + self.finetune_fraction > 1.0:
            self.fail(f"dense_fraction + finetune_fraction = {self.dense_fraction + self.finetune_fraction} exceeds 1")
        if self.mask_interval is not None and self.mask_interval < 1:
            self.fail(f"mask_interval={self.mask_interval} must be >= 1")

    def fail(self, message: str) -> NoReturn:
        raise ValueError(f"recipe {self.name}: {message}")

    @classmethod
    def knob_names(cls) -> List[str]:
        return [f.name for f in fields(cls)]

    def knobs(self) -> Dict[str, Any]:
        """Every knob and its value (what summaries, checkpoints and W&B record)."""
        return {name: getattr(self, name) for name in self.knob_names()}

    def with_options(self, **options: Any) -> "Recipe":
        check_knob_names(type(self), options)
        return replace(self, **options)

    @property
    def is_sparse(self) -> bool:
        return self.sparse

    # -- what the recipe decides ----------------------------------------------------
    def plan(self, schedule: "Schedule") -> Dict[str, float]:
        """Values fixed by the run length (read back as schedule.<name>); none by default."""
        return {}

    def decay(self, j: int, schedule: "Schedule") -> float:
        """D at sparse step j, before the fine-tune: 0 = a binary mask (STE-style recipes)."""
        return 0.0

    def ladder_for(self, target: NM) -> List[NM]:
        """The patterns the sparse phase walks through, ending on the target."""
        return [target]

    def fit_ladder(self, ladder: Sequence[NM], target: NM, group_len: int) -> List[NM]:
        """The ladder of one layer whose groups run along `group_len` weights (default: unchanged)."""
        return list(ladder)

    def rung(self, j: int, n_rungs: int, schedule: "Schedule") -> int:
        """The rung in force at sparse step j: the sparse phase split evenly over the rungs."""
        return min(n_rungs - 1, j * n_rungs // schedule.sparse_steps)

    def refresh_period(self, schedule: "Schedule") -> int:
        """Optimizer steps between mask refreshes (masks also refresh whenever the rung changes)."""
        return self.mask_interval or 1

    def extra_gradient(self, j: int, schedule: "Schedule") -> float:
        """lambda of the term lambda * (1 - mask) * W added to dL/dW at sparse step j (0: plain straight-through)."""
        return 0.0

    def charged_density(self, step: int, schedule: "Schedule", ladder: Sequence[NM]) -> float:
        """Density the FLOP counter charges a sparse layer's forward and input gradient at `step`.

        Dense (1.0) in the dense phase and whenever D > 0 (a decaying mask leaves W~
        dense); else the density of the rung in force.
        """
        if schedule.phase(step) == "dense" or schedule.decay(step) > 0.0:
            return 1.0
        return ladder[schedule.rung(step, len(ladder))].density


def check_knob_names(recipe_class: Type[Recipe], options: Dict[str, Any]) -> None:
    """Unknown knobs fail in one line that lists the recipe's own."""
    known = recipe_class.knob_names()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(
            f"recipe {recipe_class.name} has no knob(s) {', '.join(unknown)}: its knobs are {', '.join(known)}"
        )
