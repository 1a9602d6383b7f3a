"""Test-time adaptation (Steerable Conditional Diffusion, ``samplers.run(..., adapt=...)``): the adapted
prior starts as the prior, fits the measurement, costs what it says, leaves the prior as it was, treats
batch items independently, and refuses what it cannot do.

A tiny random UNet in float64 on the 8×8 oracle problems (tests/samplers/cases.py): these check the
mechanics; the benchmark (benchmarks/quality.py --adapt) measures the quality."""
from __future__ import annotations

import pytest
import torch

from medrecon import MedreconError, priors, samplers
from medrecon.priors import EDMPrecond, UNet
from medrecon.samplers.adapt import Adaptation, Adapted, adaptable_convolutions
from tests.priors.conftest import TINY, randomized
from tests.priors.test_checkpoint import MANIFEST
from tests.samplers.cases import ct_problem, mri_problem

STEPS = 6


def tiny_prior(complex_: bool = True) -> priors.Prior:
    ch = 2 if complex_ else 1
    net = randomized(UNet(ch, ch, **TINY)).eval()
    return priors.Prior(EDMPrecond(net, 0.5, 0.002, 80.0), {**MANIFEST, "complex": complex_}).double()


def _run(prior, op, y, adapt, seeds=(3,), name="ddnm", **kw):
    return samplers.run(name, prior, op, y, noise_std=0.05, steps=STEPS, adapt=adapt,
                        generator=[torch.Generator().manual_seed(s) for s in seeds], **kw)


def test_adapted_steps_follow_scd_every_kth_from_the_end_and_the_last_ones():
    assert Adaptation().steps(100) == [19, 39, 59, 79, 96, 97, 98, 99]
    assert Adaptation(every=3, last=1).steps(7) == [0, 3, 6]
    assert Adaptation().steps(STEPS) == [2, 3, 4, 5]


def test_without_updates_the_adapted_prior_is_the_prior():
    """Up-projections start at zero: with lr = 0 the samples are bit-identical to the plain run."""
    prior = tiny_prior()
    _, op, y = mri_problem(0.05)
    plain = _run(prior, op, y, None)
    frozen = _run(prior, op, y, {"lr": 0.0})
    assert torch.equal(plain, frozen)
    moved = _run(prior, op, y, {"lr": 1e-2})
    assert not torch.allclose(plain, moved)


@pytest.mark.parametrize("problem", [mri_problem, ct_problem], ids=["mri", "ct"])
def test_adaptation_lowers_the_denoisers_data_misfit(problem):
    _, op, y = problem(0.05)
    prior = tiny_prior(complex_=problem is mri_problem)
    x = op.adjoint(y) + 0.3 * torch.randn((1,) + op.ishape, dtype=op.adjoint(y).dtype, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((1,), 0.3, dtype=torch.float64)

    def misfit():
        with torch.no_grad():
            return float((op.forward(den(x, sigma)) - y).abs().pow(2).mean())

    den = Adapted(prior, prior, op, y, [], Adaptation(iters=30, lr=1e-2))
    before = misfit()  # no level to adapt at yet: the prior itself
    den.pending = [0.3]  # the next call at σ = 0.3 adapts first
    after = misfit()
    den.close()
    assert den.adapted_levels == [0.3]
    assert after < 0.5 * before


def test_counts_include_the_adaptations_forward_and_backward_passes():
    prior = tiny_prior()
    _, op, y = mri_problem(0.05)
    _, stats = _run(prior, op, y, {"iters": 3}, return_stats=True)
    adapted = len(Adaptation().steps(STEPS))
    assert stats.nfe == STEPS + 3 * adapted
    assert stats.backward_passes == 3 * adapted


def test_the_prior_is_unchanged_after_an_adapted_run():
    prior = tiny_prior()
    _, op, y = mri_problem(0.05)
    x = torch.randn(1, 1, 8, 8, dtype=torch.complex128, generator=torch.Generator().manual_seed(5))
    flags = [p.requires_grad for p in prior.parameters()]
    state = {k: v.clone() for k, v in prior.state_dict().items()}
    with torch.no_grad():
        before = prior(x, 0.5)
    _run(prior, op, y, {"lr": 1e-2, "iters": 4})
    with torch.no_grad():
        after = prior(x, 0.5)
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in prior.state_dict().items())
    assert [p.requires_grad for p in prior.parameters()] == flags
    assert all(not c._forward_hooks for c in adaptable_convolutions(prior))


def test_a_batch_is_independent_adaptations_equal_to_the_single_runs():
    prior = tiny_prior()
    _, op, y1 = mri_problem(0.05)
    y = torch.cat([y1, 1.5 * y1.flip(-1)])
    seeds = (7, 8)
    batch = _run(prior, op, y, {"lr": 1e-2, "iters": 3}, seeds=seeds)
    singles = torch.cat([_run(prior, op, y[i:i + 1], {"lr": 1e-2, "iters": 3}, seeds=(s,)) for i, s in enumerate(seeds)])
    torch.testing.assert_close(batch, singles, rtol=1e-7, atol=1e-7)


def test_adaptation_runs_under_a_callers_no_grad_and_with_guided_samplers():
    prior = tiny_prior()
    _, op, y = mri_problem(0.05)
    with torch.no_grad():
        out = _run(prior, op, y, {"iters": 2, "lr": 1e-2}, name="dps")
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bad", [{"rank": 0}, {"iters": -1}, {"lr": float("nan")}, {"every": 1.5}, {"tv": -1.0},
                                 {"steps": 3}, "yes", 3])
def test_bad_options_are_named(bad):
    prior = tiny_prior()
    _, op, y = mri_problem(0.05)
    with pytest.raises(MedreconError, match="adapt"):
        _run(prior, op, y, bad)


def test_what_cannot_be_adapted_is_refused():
    gaussian, op, y = mri_problem(0.05)
    with pytest.raises(MedreconError, match="network prior"):
        _run(gaussian, op, y, True)
    prior = tiny_prior()
    with pytest.raises(MedreconError, match="rank 64 exceeds"):
        _run(prior, op, y, {"rank": 64})
    with pytest.raises(MedreconError, match="coarse_to_fine"):
        _run(prior, op, y, True, coarse_to_fine={"factor": 2, "until_sigma": 1.0})
    assert all(not c._forward_hooks for c in adaptable_convolutions(prior))
