"""FLOPs: forward FLOPs measured from a model's real shapes, training FLOPs from each step's density.

Forward (per example, measured by ONE forward of a batch of 1 with hooks)
    Linear        2 * in_features * out_features * rows          (rows = input.numel() / in_features)
    Conv1D        the same with in = nx, out = nf: GPT-2's transformers.pytorch_utils.Conv1D is a
                  Linear with its weight stored (nx, nf), y = x @ W + b
    Conv (any nd) 2 * out_channels * (in_channels / groups * prod(kernel)) * output positions
                  (input positions for transposed convs)
    attention     QK^T and AV: 2 * 2 * heads * T_q * T_k * head_dim = 4 * T_q * T_k * width per
                  sequence, width = heads * head_dim = the query projection's output width. Charged
                  by a hook on every module that has one of `num_heads` / `n_heads` /
                  `num_attention_heads` / `head_dim` and direct Linear or Conv1D children: a fused
                  `qkv` / `c_attn` (timm ViT, Swin window attention where a "sequence" is a window;
                  GPT-2), or a query `q` / `q_proj` / `query` / `q_attn` with a key `k` / `k_proj` /
                  `key` (HF T5 self- and cross-attention, Llama; GPT-2 cross-attention, whose
                  `c_attn` then holds keys and values). T_q and the number of sequences come from the
                  query projection's input, T_k from the key projection's input. Assumes the value
                  head dim equals the query head dim. Grouped-query attention (Llama with fewer K/V
                  heads) costs the same as full multi-head attention: K and V are repeated to every
                  query head, so the width is still the query projection's.
    causal mask   not discounted: eager attention computes the full T_q x T_k products and masks
                  them afterwards, and that is what FlopCounterMode counts. The count depends only
                  on shapes, so it is the same whichever attention implementation (eager, SDPA,
                  flash) the run uses; causal kernels that skip masked blocks do up to half the
                  QK^T / AV work, for them this is an upper bound.
    ignored       biases, norms, softmax, activations, residual adds, dropout, masking, scaling,
                  embedding gathers, position biases, rotary position embeddings (elementwise),
                  the sparsity mask multiply, and any matmul done outside an nn.Linear / Conv1D /
                  conv / recognised attention module (e.g. nn.MultiheadAttention's packed
                  in_proj_weight). The tests check timm ViT, timm Swin-V2, HF T5, GPT-2 and Llama
                  against FlopCounterMode (eager attention): measured 0.0% apart.
    Swin-V2       computes `qkv` with F.linear on the module's weight when it has q/k/v biases, so
                  the Linear's hook never fires: the attention hook charges that projection from
                  the attention input instead (under the qkv module's name).
    batch-shared  work that does not scale with the batch (Swin-V2's relative-position MLP) is
                  measured once per example, so it is over-counted by (batch - 1) times itself: tiny.

Training (one optimizer step, `examples_per_step` examples; 2 FLOPs per multiply-add)
    dense layer or dense rows     3 F: forward, input gradient, weight gradient
    sparse segment of a layer     d F (forward) + d F (input gradient) + F (weight gradient)
                                  The weight gradient stays dense: every straight-through recipe
                                  sends gradient to all of W. F is the layer's forward FLOPs times
                                  the segment's share of output units (Q, K, V of a fused qkv or
                                  c_attn: a third each), counted along the parametrization's
                                  `out_dim` (rows of a Linear, columns of a Conv1D).
    density d at a step           1 in the dense phase and whenever D > 0 (a decaying mask keeps W~
                                  dense, so MDGF is dense until D is exactly 0, i.e. until the
                                  fine-tune phase for mdgf_exp); otherwise the rung's N/M (the one
                                  rung of STE / SR-STE, the current ladder rung of SDGF)
    attention matmuls             dense: 3x their forward
    SR-STE's lambda (1 - mask) W term and the optimizer update are elementwise: ignored.
The 3x rule charges an input gradient to the first layer too; autograd skips it when the model's
input needs no gradient (an image into a patch embedding), so measured backward FLOPs of a ViT are
lower by exactly the first layer's forward FLOPs (0.2% of a ViT-B/16 step). A language model's first
layers read embeddings, which need gradients: there 3x is exact.

Inference: forward FLOPs with every sparse segment at its target density N/M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.hooks import RemovableHandle

from pgfsparse.sparsity.masked_weight import output_dim
from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.schedule import Schedule

if TYPE_CHECKING:  # pragma: no cover
    from pgfsparse.sparsity.sparsifier import Sparsifier

HEAD_ATTRIBUTES = ("num_heads", "n_heads", "num_attention_heads", "head_dim")
FUSED_QKV_NAMES = ("qkv", "c_attn")
QUERY_NAMES = ("q", "q_proj", "query", "q_attn")
KEY_NAMES = ("k", "k_proj", "key")


# -- forward FLOPs ---------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFlops:
    """Forward FLOPs of one example."""

    per_layer: Dict[str, float]  # nn.Linear / Conv1D / conv module name -> FLOPs
    per_attention: Dict[str, float] = field(default_factory=dict)  # attention module name -> QK^T + AV FLOPs

    @property
    def attention(self) -> float:
        return sum(self.per_attention.values())

    @property
    def total(self) -> float:
        return sum(self.per_layer.values()) + self.attention


def projection_features(module: torch.nn.Module) -> Optional[Tuple[int, int]]:
    """(in, out) features of an nn.Linear or a GPT-2 Conv1D; None for any other module."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if output_dim(module) == 1:  # a Conv1D, weight (in, out): the one check of masked_weight.output_dim
        conv1d: Any = module  # nx, nf: Conv1D's in and out features (untyped to mypy)
        return int(conv1d.nx), int(conv1d.nf)
    return None


def projection_flops(in_features: int, out_features: int, x: torch.Tensor) -> float:
    """2 * in * out per row of `x` (rows = every position of every sequence)."""
    return 2.0 * in_features * out_features * (x.numel() // in_features)


def linear_flops(module: torch.nn.Linear, x: torch.Tensor) -> float:
    return projection_flops(module.in_features, module.out_features, x)


def conv_flops(module: torch.nn.modules.conv._ConvNd, x: torch.Tensor, out: torch.Tensor) -> float:
    # A transposed conv applies each weight at every input position, a regular one at every output position.
    positions = x.numel() // module.in_channels if module.transposed else out.numel() // module.out_channels
    per_position = module.out_channels * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    return 2.0 * per_position * positions


def attention_matmul_flops(query_input_shape: Sequence[int], key_tokens: int, width: int) -> float:
    """QK^T + AV over all sequences: 2 * 2 * heads * T_q * T_k * head_dim, heads * head_dim = width."""
    sequences = math.prod(query_input_shape[:-2])
    return 4.0 * sequences * query_input_shape[-2] * key_tokens * width


@dataclass
class _AttentionCall:
    """What the hooks see of one call of an attention module."""

    roles: Dict[int, Tuple[str, ...]]  # id(projection) -> ('q', 'k') for a fused qkv, ('q',) or ('k',)
    input_shapes: Dict[str, torch.Size] = field(default_factory=dict)  # 'q' | 'k' -> that projection's input


class _AttentionModule:
    """An attention module the counter can reason about, from its Linear / Conv1D children.

    Either a fused projection makes queries, keys and values (width = a third of its output), or
    a query projection makes queries (width = its output) and a key projection (or, with a query
    projection beside it, the fused one: GPT-2 cross-attention's key-value c_attn) makes keys.
    The head attribute only identifies the module: heads * head_dim is the query width.
    """

    def __init__(self, module: torch.nn.Module):
        children = dict(module.named_children())
        self.features = {n: f for n, c in children.items() if (f := projection_features(c)) is not None}
        fused = next((n for n in FUSED_QKV_NAMES if n in self.features), None)
        query = next((n for n in QUERY_NAMES if n in self.features), None)
        key = next((n for n in KEY_NAMES if n in self.features), fused)
        self.fused_name = fused if query is None else None  # q, k and v from one projection
        self.query_name = self.fused_name or query
        self.key_name = self.fused_name or key
        self.query = children[self.query_name] if self.query_name is not None else None
        self.key = children[self.key_name] if self.key_name is not None else None
        query_out = self.features[self.query_name][1] if self.query_name is not None else 0
        self.width = query_out // 3 if self.fused_name is not None else query_out

    @staticmethod
    def matches(module: torch.nn.Module) -> bool:
        if not any(isinstance(getattr(module, a, None), int) for a in HEAD_ATTRIBUTES):
            return False
        probe = _AttentionModule(module)
        return probe.query is not None and probe.key is not None

    def roles(self) -> Dict[int, Tuple[str, ...]]:
        if self.query is self.key:
            return {id(self.query): ("q", "k")}
        return {id(self.query): ("q",), id(self.key): ("k",)}


def _first_tensor(args: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    for value in list(args) + list(kwargs.values()):
        if torch.is_tensor(value):
            return value
    return None


class _ForwardRecorder:
    """Forward hooks that add up FLOPs per Linear / Conv1D / conv and per attention module."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.per_layer: Dict[str, float] = {}
        self.per_attention: Dict[str, float] = {}
        self.calls: List[_AttentionCall] = []  # stack: attention modules currently running
        self.handles: List[RemovableHandle] = []

    def __enter__(self) -> "_ForwardRecorder":
        for name, module in self.model.named_modules():
            if projection_features(module) is not None:
                self.handles.append(module.register_forward_hook(self._on_projection(name)))
            elif isinstance(module, torch.nn.modules.conv._ConvNd):
                self.handles.append(module.register_forward_hook(self._on_conv(name)))
            if _AttentionModule.matches(module):
                attention = _AttentionModule(module)
                self.handles.append(module.register_forward_pre_hook(self._on_attention_start(attention)))
                self.handles.append(
                    module.register_forward_hook(self._on_attention_end(name, attention), with_kwargs=True)
                )
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    def _add(self, table: Dict[str, float], name: str, flops: float) -> None:
        table[name] = table.get(name, 0.0) + flops

    def _on_projection(self, name: str):
        def hook(module, inputs, output):
            features = projection_features(module)
            assert features is not None  # only projections get this hook
            self._add(self.per_layer, name, projection_flops(*features, inputs[0]))
            call = self.calls[-1] if self.calls else None
            if call is not None:
                for role in call.roles.get(id(module), ()):
                    call.input_shapes.setdefault(role, inputs[0].shape)

        return hook

    def _on_conv(self, name: str):
        def hook(module, inputs, output):
            self._add(self.per_layer, name, conv_flops(module, inputs[0], output))

        return hook

    def _on_attention_start(self, attention: _AttentionModule):
        def hook(module, inputs):
            self.calls.append(_AttentionCall(attention.roles()))

        return hook

    def _on_attention_end(self, name: str, attention: _AttentionModule):
        def hook(module, args, kwargs, output):
            call = self.calls.pop()
            hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
            if attention.fused_name is not None and "q" not in call.input_shapes:
                # projected with F.linear on the weight (Swin-V2): charge it from the attention input
                features = attention.features[attention.fused_name]
                self._add(self.per_layer, f"{name}.{attention.fused_name}", projection_flops(*features, hidden))
            query_shape = call.input_shapes["q"] if "q" in call.input_shapes else hidden.shape
            if "k" in call.input_shapes:
                key_tokens = call.input_shapes["k"][-2]
            else:  # keys from a cache, or a fused projection that ran as F.linear
                key_source = kwargs.get("key_value_states", kwargs.get("encoder_hidden_states"))
                key_tokens = key_source.shape[-2] if key_source is not None else query_shape[-2]
            self._add(self.per_attention, name, attention_matmul_flops(query_shape, key_tokens, attention.width))

        return hook


@torch.no_grad()
def measure_forward_flops(model: torch.nn.Module, args: Any = (), kwargs: Optional[dict] = None) -> ModelFlops:
    """Forward FLOPs of one example, from ONE forward of `model(*args, **kwargs)` on a batch of 1."""
    args = args if isinstance(args, tuple) else (args,)
    kwargs = kwargs or {}
    first = _first_tensor(args, kwargs)
    if first is not None and first.dim() > 0 and first.shape[0] != 1:
        raise ValueError(
            f"FLOPs are counted per example: give a batch of 1, got a first input of shape {tuple(first.shape)}"
        )
    was_training = model.training
    model.eval()  # no dropout randomness; shapes are the same as in training
    try:
        with _ForwardRecorder(model) as recorder:
            model(*args, **kwargs)
    finally:
        model.train(was_training)
    return ModelFlops(recorder.per_layer, recorder.per_attention)


# -- training FLOPs ----------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentFlops:
    """A block of output units of one sparse layer (rows of a Linear, columns of a Conv1D) and its FLOPs share."""

    layer: str
    location: str
    forward: float  # FLOPs per example at density 1
    target: NM
    ladder: Tuple[NM, ...]


def segment_density(schedule: Schedule, step: int, ladder: Sequence[NM]) -> float:
    """Density charged for a segment's W~ at `step`, as its recipe says (Recipe.charged_density).

    constant_density_runs below relies on it changing only where the phase, the rung
    or "D > 0" changes, which holds for every charge written in terms of those.
    """
    return schedule.charged_density(step, ladder)


def _first_step_where(predicate: Callable[[int], bool], lo: int, hi: int) -> int:
    """Smallest step in [lo, hi) where a monotone (False..., True...) predicate holds; hi if none."""
    while lo < hi:
        mid = (lo + hi) // 2
        if predicate(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _first_rung_step(schedule: Schedule, n_rungs: int, rung: int, lo: int, hi: int) -> int:
    """Smallest step in [lo, hi) where a ladder of `n_rungs` rungs has reached `rung`; hi if none."""
    return _first_step_where(lambda s: schedule.rung(s, n_rungs) >= rung, lo, hi)


def constant_density_runs(schedule: Schedule, steps: int, ladder_lengths: Sequence[int]) -> List[Tuple[int, int]]:
    """[start, stop) runs covering steps [0, steps) within which every segment's density is constant.

    Breakpoints: the phase changes, the first sparse step with D == 0 (D never rises within
    the sparse phase), and each rung change for every ladder length (rungs only advance).
    """
    sparse_start, sparse_stop = schedule.dense_steps, schedule.finetune_start
    cuts = {0, steps, sparse_start, sparse_stop}
    if schedule.recipe.decays:
        cuts.add(_first_step_where(lambda s: schedule.decay(s) == 0.0, sparse_start, sparse_stop))
    for n_rungs in set(ladder_lengths):
        for rung in range(1, n_rungs):
            cuts.add(_first_rung_step(schedule, n_rungs, rung, sparse_start, sparse_stop))
    points = sorted(c for c in cuts if 0 <= c <= steps)
    return list(zip(points, points[1:]))


class FlopCounter:
    """Forward, training and inference FLOPs of a model, dense or driven by a Sparsifier.

    counter = FlopCounter(model, (image,), {}, sparsifier=sp, examples_per_step=4096)
    counter.step_train_flops(step)          # one optimizer step
    counter.cumulative_train_flops(steps)   # the first `steps` steps (log it after `steps` steps)
    counter.run_train_flops()               # the whole run
    counter.inference_flops()               # per example, sparse segments at N/M

    `before_training`: FLOPs spent before step 0 and charged to the run (a one-shot prune's calibration
    forwards); every cumulative count includes it, so a FLOP budget does too.
    The schedule is read from the sparsifier at each call (it may be re-planned with
    `set_total_steps`); every training method also takes an explicit `schedule`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: Any = (),
        kwargs: Optional[dict] = None,
        sparsifier: Optional["Sparsifier"] = None,
        examples_per_step: int = 1,
    ):
        if examples_per_step < 1:
            raise ValueError(f"examples_per_step={examples_per_step} must be >= 1")
        self.sparsifier = sparsifier
        self.examples_per_step = int(examples_per_step)
        self.forward = measure_forward_flops(model, args, kwargs)
        self.segments = self._sparse_segments()
        self.dense_forward = self.forward.total - sum(seg.forward for seg in self.segments)
        self.before_training = 0.0

    def _sparse_segments(self) -> List[SegmentFlops]:
        segments = []
        layers = self.sparsifier.layers if self.sparsifier is not None else {}
        for name, masked in layers.items():
            if name not in self.forward.per_layer:
                raise ValueError(
                    f"sparse layer {name!r} did not run in the example forward: its FLOPs cannot be counted"
                )
            layer_flops = self.forward.per_layer[name]
            # output units lie along the parametrization's out_dim: rows of a Linear, columns of a Conv1D
            out_units = masked.mask.shape[getattr(masked, "out_dim", 0)]
            for seg in masked.segments:
                share = (seg.rows.stop - seg.rows.start) / out_units
                segments.append(SegmentFlops(name, seg.location, layer_flops * share, seg.target, tuple(seg.ladder)))
        return segments

    # -- schedules ---------------------------------------------------------------------
    @property
    def schedule(self) -> Optional[Schedule]:
        return self.sparsifier.schedule if self.sparsifier is not None else None

    def make_schedule(self, total_steps: int) -> Optional[Schedule]:
        """The sparsifier's recipe planned over `total_steps` (None when dense)."""
        return Schedule(self.sparsifier.recipe, total_steps) if self.sparsifier is not None else None

    def _resolve(self, schedule: Optional[Schedule]) -> Optional[Schedule]:
        return schedule if schedule is not None else self.schedule

    # -- training ----------------------------------------------------------------------
    def step_train_flops(self, step: int, schedule: Optional[Schedule] = None) -> float:
        """Training FLOPs of optimizer step `step` (0-based)."""
        if step < 0:
            raise ValueError(f"step={step} must be >= 0")
        schedule = self._resolve(schedule)
        per_example = 3.0 * self.dense_forward
        for seg in self.segments:
            density = segment_density(schedule, step, seg.ladder) if schedule is not None else 1.0
            per_example += (2.0 * density + 1.0) * seg.forward
        return self.examples_per_step * per_example

    def cumulative_train_flops(self, steps: int, schedule: Optional[Schedule] = None) -> float:
        """Training FLOPs of steps [0, steps), plus `before_training`: summed over constant-density runs."""
        schedule = self._resolve(schedule)
        if steps < 0 or (schedule is not None and steps > schedule.total_steps):
            limit = f"[0, {schedule.total_steps}]" if schedule is not None else ">= 0"
            raise ValueError(f"steps={steps} must lie in {limit}")
        if schedule is None or not self.segments:
            return self.before_training + steps * self.step_train_flops(0, schedule)
        runs = constant_density_runs(schedule, steps, [len(seg.ladder) for seg in self.segments])
        return self.before_training + sum(
            (stop - start) * self.step_train_flops(start, schedule) for start, stop in runs
        )

    def run_train_flops(self, total_steps: Optional[int] = None) -> float:
        """Training FLOPs of a whole run: the sparsifier's, or its recipe planned over `total_steps`."""
        if total_steps is None:
            if self.schedule is None:
                raise ValueError("a dense counter has no run length: give total_steps")
            return self.cumulative_train_flops(self.schedule.total_steps)
        schedule = self.make_schedule(total_steps)
        return self.cumulative_train_flops(total_steps, schedule)

    # -- inference ---------------------------------------------------------------------
    def inference_flops(self) -> float:
        """Forward FLOPs per example of the final model: each sparse segment at its target N/M."""
        return self.dense_forward + sum(seg.target.density * seg.forward for seg in self.segments)


def steps_for_flop_budget(
    budget_flops: float,
    counter: FlopCounter,
    make_schedule: Optional[Callable[[int], Schedule]] = None,
    max_steps: int = 2**53,
) -> int:
    """The smallest step count T whose whole-run training FLOPs reach `budget_flops`.

    The run of T steps is charged with the schedule built for T (`make_schedule(T)`, default:
    the sparsifier's recipe over T), since phases are fractions of T. Doubling, then binary
    search: the answer always satisfies run(T - 1) < budget <= run(T), and it is the smallest
    such T when run FLOPs never fall as T grows. That holds for every built-in recipe but
    mdgf_step with a derived step_interval: when ceil(decay_steps / updates) drops by one, D
    reaches 0 some steps earlier and a run can cost a few steps' FLOPs less than a run one step
    shorter; T may then be a later crossing, a few steps past the first.
    """
    schedule_for = make_schedule or counter.make_schedule

    def run_flops(total: int) -> float:
        return counter.cumulative_train_flops(total, schedule_for(total) if counter.sparsifier is not None else None)

    one_step = run_flops(1)
    if budget_flops < one_step:
        spent = (
            f", the one-shot calibration's {counter.before_training:.4g} included" if counter.before_training else ""
        )
        raise ValueError(f"FLOP budget {budget_flops:.4g} is below the cost of one step ({one_step:.4g}{spent})")
    lo, hi = 1, 1  # invariant: run(lo - 1) < budget (or lo == 1) and run(hi) >= budget once found
    while run_flops(hi) < budget_flops:
        if hi >= max_steps:
            raise ValueError(f"FLOP budget {budget_flops:.4g} needs more than max_steps={max_steps} steps")
        lo, hi = hi + 1, min(2 * hi, max_steps)
    return _first_step_where(lambda total: run_flops(total) >= budget_flops, lo, hi)
