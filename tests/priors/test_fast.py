"""FastDenoiser: a drop-in prior (attributes, errors, CPU/autograd fallback); graph replay where CUDA exists."""
from __future__ import annotations

import pytest
import torch

from medrecon import MedreconError, priors
from medrecon.priors import FastDenoiser
from tests.priors.test_checkpoint import MANIFEST, _x

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


@pytest.fixture
def prior(tmp_path, tiny_precond):
    return priors.load(priors.save(tmp_path / "tiny", tiny_precond, MANIFEST))


def test_is_a_drop_in_prior_with_the_priors_attributes(prior):
    fast = FastDenoiser(prior)
    assert (fast.complex, fast.channels, fast.sigma_min, fast.sigma_max) == (True, 2, 0.002, 80.0)
    assert fast.manifest["name"] == "tiny-mri" and fast.name == "tiny-mri"
    assert "tiny-mri" in repr(fast)
    assert fast.to("cpu") is fast


def test_pickles_and_copies_without_its_graphs(prior):
    import copy
    import pickle

    fast = FastDenoiser(prior)
    fast._cache[("sentinel",)] = object()  # stands for a captured graph (not picklable)
    for clone in (pickle.loads(pickle.dumps(fast)), copy.deepcopy(fast)):
        assert clone._cache == {} and clone.name == "tiny-mri"
        x = _x()
        torch.testing.assert_close(clone(x, 0.3), prior(x, 0.3))


def test_cpu_calls_are_the_prior_itself(prior):
    """No CUDA: the wrapped prior runs unchanged (same float32 result), counted as eager calls."""
    fast = FastDenoiser(prior)
    x = _x()
    torch.testing.assert_close(fast(x, 0.3), prior(x, 0.3), rtol=0, atol=0)
    torch.testing.assert_close(fast(x, torch.tensor([0.1, 2.0])), prior(x, torch.tensor([0.1, 2.0])), rtol=0, atol=0)
    assert fast.stats["eager_calls"] == 2 and fast.stats["graph_calls"] == 0


def test_gradients_flow_through_the_eager_fallback(prior):
    """Samplers that back-propagate through D (DPS, MCG, ΠGDM) get the prior's exact gradient."""
    fast = FastDenoiser(prior)
    x = _x().requires_grad_(True)
    (g_fast,) = torch.autograd.grad(fast(x, 0.5).abs().pow(2).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(prior(x2, 0.5).abs().pow(2).sum(), x2)
    torch.testing.assert_close(g_fast, g_ref)


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": torch.float64}, "dtype"),
    ({"max_graphs": 0}, "max_graphs"),
    ({"warmup": 0}, "warmup"),
])
def test_rejects_bad_settings(prior, kwargs, match):
    with pytest.raises(MedreconError, match=match):
        FastDenoiser(prior, **kwargs)
    with pytest.raises(MedreconError, match="callable"):
        FastDenoiser(42)


def test_bad_sigma_is_still_an_error(prior):
    with pytest.raises(MedreconError, match="sigma"):
        FastDenoiser(prior)(_x(), torch.tensor([0.1, 0.2, 0.3]))


@cuda
def test_graph_replay_equals_eager_in_float32(prior):
    """dtype=None: replaying the captured graph is the same arithmetic as the eager call."""
    p = prior.to("cuda")
    fast = FastDenoiser(p, dtype=None)
    x = _x().to("cuda")
    for sigma in (0.1, 3.0, 0.1):
        out = fast(x, sigma)
        torch.testing.assert_close(out, p(x, sigma), rtol=1e-5, atol=1e-6)
    assert fast.stats["captures"] == 1 and fast.stats["graph_calls"] == 3
    first = fast(x, 0.1)
    fast(2 * x, 0.1)
    torch.testing.assert_close(first, p(x, 0.1), rtol=1e-5, atol=1e-6)  # outputs are copies, not the static buffer
