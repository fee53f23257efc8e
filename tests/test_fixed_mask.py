"""fixed_mask: one mask, taken at the first sparse step and kept; gradient only to the kept weights."""
import pytest
import torch
from torch import nn

from pgfsparse import sparsify


def top2_of_4(weight: torch.Tensor) -> torch.Tensor:
    """The 2:4 magnitude mask computed here, independently: topk over each group of 4 inputs."""
    groups = weight.detach().abs().reshape(weight.shape[0], -1, 4)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(2, dim=-1).indices, True)
    return keep.reshape(weight.shape)


def model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 8, bias=False))
    return model, torch.randn(16, 8)


def latent(model) -> torch.Tensor:
    return model[0].parametrizations.weight.original


@pytest.mark.parametrize("recipe, pruned_get_gradient", [("fixed_mask", False), ("ste", True)])
def test_only_kept_weights_get_gradient(recipe, pruned_get_gradient):
    model, x = model_and_batch()
    sp = sparsify(model, "2:4", recipe=recipe, total_steps=4, layer_map={"ff": [r"^0$"]}, dense_fraction=0.0)
    sp.step(0)
    mask = top2_of_4(latent(model))
    (model(x) ** 2).sum().backward()
    # dL/dW~ by hand: W~ = W * mask, y = x W~^T, L = sum(y^2) -> dL/dW~ = 2 y^T x
    y = x @ (latent(model).detach() * mask).t()
    upstream = 2 * y.t() @ x
    expected = upstream * mask if not pruned_get_gradient else upstream
    torch.testing.assert_close(latent(model).grad, expected)
    assert (latent(model).grad[~mask] != 0).any() == pruned_get_gradient


def test_the_mask_of_the_first_sparse_step_is_kept_to_the_end():
    model, _ = model_and_batch(1)
    steps = 10
    sp = sparsify(model, "2:4", recipe="fixed_mask", total_steps=steps, layer_map={"ff": [r"^0$"]},
                  dense_fraction=0.2, finetune_fraction=0.1)
    for step in range(2):  # the dense warm-up: no mask yet
        sp.step(step)
    with torch.no_grad():
        latent(model).mul_(torch.linspace(1, 2, 8))  # weights the first mask is taken from
    first = top2_of_4(latent(model))
    sp.step(2)  # the first sparse step: the magnitude mask of the weights now
    assert torch.equal(sp.layers["0"].mask, first)
    with torch.no_grad():  # invert the magnitudes: any refreshed mask would be the complement
        latent(model).copy_(latent(model).sign() / latent(model).abs())
    assert torch.equal(top2_of_4(latent(model)), ~first)
    for step in range(3, steps):  # the rest of the sparse phase and the fine-tune
        sp.step(step)
        assert torch.equal(sp.layers["0"].mask, first), step
    with sp.strict():  # the strict view is still the target pattern of the final weights (what export writes)
        assert ((model[0].weight != 0).reshape(8, 2, 4).sum(-1) == 2).all()


def test_a_refresh_interval_is_refused():
    with pytest.raises(ValueError, match="never refreshed"):
        sparsify(nn.Sequential(nn.Linear(8, 8)), "2:4", recipe="fixed_mask", layer_map={"ff": [r"^0$"]},
                 mask_interval=5)
