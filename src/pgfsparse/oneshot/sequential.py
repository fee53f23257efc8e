"""One-shot N:M pruning of a whole model, block by block in forward order, as SparseGPT and Wanda do.

The per-layer pruners (`magnitude_nm`, `wanda_nm`, `sparsegpt_nm`) need each layer's calibration inputs. Taking them
all from one dense forward would calibrate every layer on inputs that the pruned model never produces: the error of
the pruned early blocks reaches the later ones. So blocks are pruned in the order the forward runs them, and each
block is calibrated on a fresh forward of the model as it is then (its earlier blocks already pruned, in place).

Which layers and patterns: the sparsity engine's own layer maps (`pgfsparse.sparsity.targets`), so a one-shot run
prunes exactly the layers and output blocks (Q, K, V of a fused qkv) that training will mask. A GPT-2 ``Conv1D``
weight is (in, out): each of its output blocks is transposed to the per-layer functions' (out, in) and back. The
output blocks of one layer share its calibration statistics: they share its input.

Blocks: one forward over the first batch records the order in which the matched layers are first called (forward
hooks work for every layout: Swin stages, T5's encoder then decoder). Consecutive layers with the same *block key*
form a block (a layer whose weight its parent applies with ``F.linear``, as timm Swin-V2's ``attn.qkv``, never
calls its own forward: it is calibrated on its parent's input when that has the layer's in_features, as the FLOP
counter does). The default key (`block_key`) is the layer's name up to its innermost numbered container (the last
all-digit path component before the layer's own name): ``blocks.3`` (ViT), ``layers.1.blocks.0`` (Swin),
``transformer.h.1`` (GPT-2), ``model.layers.0`` (Llama); a layer with no number in its path is its own block. For
T5 this is ``encoder.block.2.layer.0``: attention, cross-attention and FF of one T5 block are three blocks, which
is SparseGPT's "true sequential" refinement (later sub-layers see the pruned earlier ones) at 2-3 times the
calibration forwards of per-block grouping; pass ``block_of=lambda name: ...`` for another grouping.

Each block's calibration forward stops (by a private exception from a hook) as soon as a layer of a later block is
about to run, so the early blocks cost a fraction of a forward; the last block runs the full forward. The report
counts the forwards started and their cost in full-forward equivalents, for the FLOP charge.

Works on a plain model, before `pgfsparse.sparsify` attaches masks (layers with a mask attached are refused): pruned
weights are set to zero in the weights themselves, so the engine's first masks of the pruned weights keep them.
Choosing and seeding the calibration samples, and putting them on the model's device, is the caller's job; the
pruning itself is deterministic (the model runs in eval mode, no dropout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from pgfsparse.oneshot.calibration import LayerStatistics
from pgfsparse.oneshot.magnitude import magnitude_nm
from pgfsparse.oneshot.sparsegpt import sparsegpt_nm
from pgfsparse.oneshot.wanda import wanda_nm
from pgfsparse.sparsity.masked_weight import output_dim, weight_of
from pgfsparse.sparsity.pattern import NM
from pgfsparse.sparsity.targets import LayerMapLike, Match, find_layers, resolve_layer_map, resolve_patterns

METHODS = ("magnitude", "wanda", "sparsegpt")
_NUMBER = re.compile(r"\d+")


@dataclass
class SegmentResult:
    """One output block of one layer after pruning: its pattern and (SparseGPT only) the relative output error.

    `error` is ||(W - W') X||_F / ||W X||_F over the calibration inputs of this block of outputs (bias excluded),
    computed from X^T X, so only where the Hessian is kept anyway (SparseGPT); None for magnitude and Wanda.
    """

    layer: str
    location: str
    pattern: NM
    outputs: Tuple[int, int]  # [start, stop) along the layer's output units
    error: Optional[float] = None


@dataclass
class OneShotReport:
    """What `prune_model` did: per segment results, the blocks in order, and the calibration cost.

    `forwards` counts the model forwards started (one batch each, the order-finding pass included); 0 for magnitude.
    `forward_equivalents` is their cost in full forwards, measured by the matched layers' calls that ran (a forward
    stopped after the first of B equal blocks counts about 1/B): an estimate for the FLOP charge, of which
    `forwards` full forwards is the upper bound. SparseGPT's solver is not included in either.
    """

    method: str
    segments: List[SegmentResult] = field(default_factory=list)
    blocks: List[List[str]] = field(default_factory=list)
    forwards: int = 0
    forward_equivalents: float = 0.0
    calibration_rows: Dict[str, int] = field(default_factory=dict)  # layer -> input rows (tokens) it was fit on
    skipped: List[str] = field(default_factory=list)  # layers left dense (allow_skip: a shape M does not divide)


class _StopForward(BaseException):
    """Raised by a hook to end a calibration forward once the block being calibrated has run.

    A BaseException, so that model code catching ``Exception`` does not swallow it.
    """


def block_key(name: str) -> str:
    """The layer's name up to its innermost numbered container (e.g. ``blocks.3``); the name itself if none.

    The layer's own last component is not considered, so the layers ``mlp.0`` and ``mlp.2`` of one block stay
    together.
    """
    parts = name.split(".")
    for index in range(len(parts) - 2, -1, -1):
        if _NUMBER.fullmatch(parts[index]):
            return ".".join(parts[: index + 1])
    return name


def _default_forward(model: nn.Module, batch: Any) -> Any:
    """model(**batch) for a mapping (Hugging Face keyword inputs), else model(batch)."""
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(batch)


def _segment_view(weight: torch.Tensor, out_dim: int, rows: slice) -> torch.Tensor:
    """The (out, in) view of one output block: rows of a Linear weight, the transposed columns of a Conv1D one."""
    return weight[rows, :] if out_dim == 0 else weight[:, rows].t()


def _check_arguments(method: str, blocksize: int, damp: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown one-shot method {method!r}: choose one of {', '.join(METHODS)}")
    if isinstance(blocksize, bool) or not isinstance(blocksize, int) or blocksize < 1:
        raise ValueError(f"blocksize must be a positive integer, got {blocksize!r}: e.g. 128")
    if not isinstance(damp, (int, float)) or isinstance(damp, bool) or not 0 <= damp < float("inf"):
        raise ValueError(f"damp must be a finite number >= 0, got {damp!r}: e.g. 0.01")


def _in_features(module: nn.Module) -> int:
    """Input size of a Linear (out, in) or a GPT-2 Conv1D (in, out) weight."""
    return weight_of(module).shape[1 - output_dim(module)]


def _check_layers(
    matches: List[Match], patterns: Dict[str, NM], method: str, blocksize: int, allow_skip: bool
) -> Tuple[List[Match], List[str]]:
    """(the layers to prune, the names of those left dense), refusing before any forward a layer with a mask
    attached, or a pattern its shape or the block size refuses (a shape left dense instead with `allow_skip`)."""
    if not matches:
        raise ValueError(
            f"no layer of the model matches the locations {', '.join(patterns)}: check the layer map or targets"
        )
    kept, skipped = [], []
    for match in matches:
        if parametrize.is_parametrized(match.module, "weight"):
            raise ValueError(
                f"layer {match.name!r} already has a mask attached: prune the plain model before pgfsparse.sparsify"
            )
        weight = weight_of(match.module)
        if weight.dim() != 2:
            raise ValueError(f"layer {match.name!r} has a {weight.dim()}-D weight: one-shot pruning takes 2-D weights")
        in_features = _in_features(match.module)
        fits = True
        for location, _ in match.blocks:
            nm = patterns[location]
            if in_features % nm.m:
                if allow_skip:  # the sparsifier leaves it dense too (its allow_skip): so does the prune
                    fits = False
                    continue
                raise ValueError(
                    f"layer {match.name!r} ({location}) has {in_features} inputs, not a multiple of M={nm.m}: "
                    f"choose an M that divides it or leave {location} dense"
                )
            if method == "sparsegpt" and blocksize % nm.m:
                raise ValueError(
                    f"blocksize {blocksize} is not a multiple of M={nm.m} ({location}): use a multiple of M, "
                    f"e.g. {nm.m * max(1, 128 // nm.m)}"
                )
        if fits:
            kept.append(match)
        else:
            skipped.append(match.name)
    return kept, skipped


def _layer_input(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> torch.Tensor:
    """The input a Linear / Conv1D forward receives: its first positional argument, or its first keyword one."""
    if args:
        return args[0]
    return next(iter(kwargs.values()))


@torch.no_grad()
def _prune_layer(
    match: Match,
    patterns: Dict[str, NM],
    method: str,
    stats: Optional[LayerStatistics],
    blocksize: int,
    damp: float,
) -> List[SegmentResult]:
    """Prune every output block of one layer in place with its own pattern; the blocks share `stats`."""
    weight = weight_of(match.module)
    out_dim = output_dim(match.module)
    results = []
    for location, rows in match.blocks:
        nm = patterns[location]
        dense = _segment_view(weight, out_dim, rows)  # (out, in) view of the stored weight
        error = None
        if method == "magnitude":
            new = dense * magnitude_nm(dense, nm.n, nm.m)
        elif method == "wanda":
            assert stats is not None
            new = dense * wanda_nm(dense, stats.feature_norms(), nm.n, nm.m)
        else:
            assert stats is not None
            hessian = stats.hessian
            new, _ = sparsegpt_nm(dense, hessian, nm.n, nm.m, blocksize=blocksize, damp=damp)
            delta = (dense - new).to(hessian.dtype)
            reference = dense.to(hessian.dtype)
            total = float(((reference @ hessian) * reference).sum())
            error = float(((delta @ hessian) * delta).sum()) ** 0.5 / total**0.5 if total > 0 else 0.0
        dense.copy_(new)  # writes through the view into the layer's weight
        results.append(SegmentResult(match.name, location, nm, (rows.start, rows.stop), error))
    return results


class _Calibrator:
    """Runs the calibration forwards: the order-finding pass, then one pass over all batches per block.

    `source[name]` is the module whose forward input is the layer's input: the layer itself, or, for a layer whose
    module is never called because its parent applies the weight with ``F.linear`` (timm Swin-V2's ``attn.qkv``
    when it has q/k/v biases), the parent, provided the parent's first input has the layer's in_features.
    """

    def __init__(self, model: nn.Module, batches: Sequence[Any], forward: Callable[[nn.Module, Any], Any]) -> None:
        self.model = model
        self.batches = batches
        self.forward = forward
        self.forwards = 0
        self.calls = 0  # matched-layer calls completed, over all forwards
        self.calls_per_forward = 0  # in one full forward (from the order pass)
        self.source: Dict[str, nn.Module] = {}

    def _count(self, module: nn.Module, args: Any, output: Any) -> None:
        self.calls += 1

    def _run(self, batch: Any, matches: List[Match]) -> None:
        """One forward over `batch`, counting the matched layers' completed calls; a stop ends it quietly."""
        counters = [self.source[m.name].register_forward_hook(self._count) for m in matches]
        self.forwards += 1
        try:
            self.forward(self.model, batch)
        except _StopForward:
            pass
        finally:
            for handle in counters:
                handle.remove()

    def order(self, matches: List[Match]) -> List[Match]:
        """The matched layers in the order the forward first calls them; refuse any the forward never reaches."""
        modules = dict(self.model.named_modules())
        parents = {m.name: modules.get(m.name.rpartition(".")[0]) for m in matches}
        first: Dict[int, Tuple[int, int]] = {}  # id(module) -> (index of its first call, its input's last dim)

        def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
            if id(module) not in first:
                inputs = _layer_input(args, kwargs) if args or kwargs else None
                width = inputs.shape[-1] if isinstance(inputs, torch.Tensor) and inputs.dim() else -1
                first[id(module)] = (len(first), width)

        completed: Dict[int, int] = {}  # id(module) -> calls completed

        def count(module: nn.Module, args: Any, output: Any) -> None:
            completed[id(module)] = completed.get(id(module), 0) + 1

        watched = {id(m.module): m.module for m in matches}
        watched.update({id(p): p for p in parents.values() if p is not None})
        handles = [module.register_forward_pre_hook(hook, with_kwargs=True) for module in watched.values()]
        handles += [module.register_forward_hook(count) for module in watched.values()]
        self.source = {m.name: m.module for m in matches}
        try:
            self._run(self.batches[0], [])
        finally:
            for handle in handles:
                handle.remove()
        reached: List[Tuple[int, Match]] = []
        for match in matches:
            parent = parents[match.name]
            if id(match.module) in first:
                reached.append((first[id(match.module)][0], match))
            elif parent is not None and first.get(id(parent), (0, -1))[1] == _in_features(match.module):
                self.source[match.name] = parent  # weight applied by the parent (F.linear): same input
                reached.append((first[id(parent)][0], match))
            else:
                raise ValueError(
                    f"target layer {match.name!r} never ran in the calibration forward: pass batches and a forward "
                    f"that run it (e.g. decoder inputs for an encoder-decoder)"
                )
        ordered = [match for _, match in sorted(reached, key=lambda pair: pair[0])]  # stable: model order on ties
        self.calls = self.calls_per_forward = sum(completed.get(id(self.source[m.name]), 0) for m in matches)
        return ordered

    def statistics(
        self, block: List[Match], earlier: List[Match], later: List[Match], hessian: bool
    ) -> Dict[str, LayerStatistics]:
        """Each block layer's input statistics over all batches; a forward stops when a later layer is reached."""
        stats = {m.name: LayerStatistics(_in_features(m.module), hessian=hessian) for m in block}

        def record(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
                stats[name].add(_layer_input(args, kwargs))

            return hook

        def stop(module: nn.Module, args: Any) -> None:
            raise _StopForward

        handles = [self.source[m.name].register_forward_pre_hook(record(m.name), with_kwargs=True) for m in block]
        handles += [self.source[m.name].register_forward_pre_hook(stop) for m in later]
        try:
            for batch in self.batches:
                self._run(batch, earlier + block)
        finally:
            for handle in handles:
                handle.remove()
        return stats


def _group_blocks(ordered: List[Match], block_of: Callable[[str], str]) -> List[List[Match]]:
    """Consecutive layers (in first-call order) with the same block key form one block."""
    blocks: List[List[Match]] = []
    previous: Optional[str] = None
    for match in ordered:
        key = block_of(match.name)
        if blocks and key == previous:
            blocks[-1].append(match)
        else:
            blocks.append([match])
        previous = key
    return blocks


def _progress(blocks: List[List[Match]], method: str, shown: bool) -> Iterable[List[Match]]:
    """The blocks, under a progress bar when `shown` (a large model's calibration takes minutes)."""
    if not shown:
        return blocks
    from tqdm.auto import tqdm

    return tqdm(blocks, desc=f"oneshot {method}", unit="block", dynamic_ncols=True)


def prune_model(
    model: nn.Module,
    pattern: Any,
    method: str,
    batches: Optional[Iterable[Any]] = None,
    *,
    forward: Optional[Callable[[nn.Module, Any], Any]] = None,
    targets: Optional[Iterable[str]] = None,
    layer_map: Optional[LayerMapLike] = None,
    blocksize: int = 128,
    damp: float = 0.01,
    block_of: Callable[[str], str] = block_key,
    allow_skip: bool = False,
    progress: bool = False,
) -> OneShotReport:
    """Prune the plain (unmasked) `model` in place to N:M at every sparse location with one one-shot method.

    `pattern` and `targets` are read as by `pgfsparse.sparsify` (one pattern for `targets`, default FF only, or a
    dict {location or group: pattern}); `layer_map` as there (None: detected from the model class). `method` is
    ``magnitude`` (no calibration: `batches` is not used), ``wanda`` or ``sparsegpt`` (`blocksize`, which M must
    divide, and `damp`). `batches` are model inputs, kept in a list and each run by ``forward(model, batch)``
    (default: ``model(**batch)`` for a dict, else ``model(batch)``); they must already be on the model's device.
    Runs under no_grad in eval mode and restores every module's train/eval mode after. Pruned weights are exactly 0.
    `allow_skip` leaves a layer whose inputs M does not divide dense (listed in the report's `skipped`), as
    `pgfsparse.sparsify(..., allow_skip=True)` does, instead of refusing. `progress` shows a bar over the blocks.
    """
    _check_arguments(method, blocksize, damp)
    patterns = resolve_patterns(pattern, targets)
    if not patterns:
        raise ValueError("every location is dense: give an N:M pattern (e.g. '2:4') for at least one location")
    matches = find_layers(model, resolve_layer_map(model, layer_map), patterns)
    matches, skipped = _check_layers(matches, patterns, method, blocksize, allow_skip)
    report = OneShotReport(method, skipped=skipped)
    if not matches:  # every layer left dense (allow_skip): nothing to calibrate
        return report

    if method == "magnitude":
        report.blocks = [[m.name] for m in matches]
        for match in matches:
            report.segments += _prune_layer(match, patterns, method, None, blocksize, damp)
        return report

    calibration = list(batches) if batches is not None else []
    if not calibration:
        raise ValueError(f"{method} needs calibration inputs but batches is empty: pass a list of model inputs")
    calibrator = _Calibrator(model, calibration, forward or _default_forward)
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            blocks = _group_blocks(calibrator.order(matches), block_of)
            for index, block in enumerate(_progress(blocks, method, progress)):
                earlier = [m for done in blocks[:index] for m in done]
                later = [m for rest in blocks[index + 1 :] for m in rest]
                stats = calibrator.statistics(block, earlier, later, hessian=method == "sparsegpt")
                for match in block:
                    report.calibration_rows[match.name] = stats[match.name].rows
                    report.segments += _prune_layer(match, patterns, method, stats[match.name], blocksize, damp)
                report.blocks.append([m.name for m in block])
    finally:
        for module, training in modes.items():
            module.training = training
    report.forwards = calibrator.forwards
    report.forward_equivalents = calibrator.calls / calibrator.calls_per_forward
    return report
