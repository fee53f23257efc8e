"""Per-layer diagnostics of a sparsifier, cheap enough to log every few hundred steps.

Keys are ``"{layer}/{metric}"`` (``"{layer}[{location}]/{metric}"`` for the
Q/K/V blocks of a fused weight) plus model-wide ``"ff/..."`` entries:

  density          fraction of the binary mask that is kept (N/M once sparse)
  nonzero          fraction of W~ that is nonzero (1 while D > 0: a decaying mask is dense)
  sad              mask entries flipped since the previous call (sparse architecture divergence)
  decay            current D
  rung             index of the ladder rung in force (-1: dense phase)
  grad_norm_kept   L2 norm of dL/dW over kept weights
  grad_norm_pruned L2 norm of dL/dW over pruned weights (0 would mean no gradient flows to them)
  ff/grad_abs_var  variance of |dL/dW| over all FF weights (the paper's gradient-noise curve b)
  ff/exp_avg_sq_var  variance of Adam's exp_avg_sq over all FF weights (curve a), if an
                   optimizer with that state is passed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch

from pgfsparse.sparsity.masked_weight import gathered, latent_weight

if TYPE_CHECKING:  # pragma: no cover
    from pgfsparse.sparsity.sparsifier import Sparsifier


@torch.no_grad()
def collect(
    sparsifier: "Sparsifier", previous_masks: Dict[str, torch.Tensor], optimizer: Optional[torch.optim.Optimizer] = None
) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
    """(the diagnostics, the masks they saw): the caller keeps the masks for the next call's SAD.

    FSDP2-sharded weights, gradients and Adam moments are gathered whole (`gathered`): every process
    must call this at the same steps.
    """
    out: Dict[str, float] = {}
    masks: Dict[str, torch.Tensor] = {}
    ff_grads, ff_second_moments = [], []
    for name, param in sparsifier.layers.items():
        module = sparsifier.model.get_submodule(name)
        latent = latent_weight(module)
        grad = None if latent.grad is None else gathered(latent.grad)
        mask = param.mask
        previous = previous_masks.get(name)
        effective = param(gathered(latent))  # W~: what `module.weight` reads (one parametrization)
        for seg in param.segments:
            key = name if len(param.segments) == 1 else f"{name}[{seg.location}]"
            block = param.index(seg)  # its output units, along the weight's out_dim
            kept = mask[block]
            out[f"{key}/density"] = kept.float().mean().item() if param.active else 1.0
            out[f"{key}/nonzero"] = (effective[block] != 0).float().mean().item()
            out[f"{key}/sad"] = 0 if previous is None else int((kept != previous[block]).sum().item())
            out[f"{key}/decay"] = float(param.decay)
            out[f"{key}/rung"] = seg.version[0] if (param.active and seg.version) else -1
            if grad is not None:
                g = grad[block]
                out[f"{key}/grad_norm_kept"] = g[kept].norm().item()
                out[f"{key}/grad_norm_pruned"] = g[~kept].norm().item()
        masks[name] = mask.clone()
        if "ff" in sparsifier.locations[name]:
            if grad is not None:
                ff_grads.append(grad.abs().flatten().float())
            state = optimizer.state.get(latent, {}) if optimizer is not None else {}
            if "exp_avg_sq" in state:
                ff_second_moments.append(gathered(state["exp_avg_sq"]).flatten().float())
    if ff_grads:
        out["ff/grad_abs_var"] = torch.cat(ff_grads).var().item()
    if ff_second_moments:
        out["ff/exp_avg_sq_var"] = torch.cat(ff_second_moments).var().item()
    return out, masks
