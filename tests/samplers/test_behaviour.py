"""Sampler contract: determinism, batch equivalence, progress callback, NFE/backward counts, data
consistency of the projection methods, CCDF warm start, schedules and bad input.

All on the 8×8 oracle problems (tests/samplers/cases.py) with a handful of steps: these tests check
the mechanics, the oracle tests (test_posterior.py) check the statistics.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from medrecon import MedreconError, samplers
from medrecon.samplers import schedules
from tests.samplers.cases import ct_problem, mri_problem

METHODS = samplers.available()
STEPS = 6
# expected (NFE, backward passes) for STEPS steps with the options below
OPTIONS = {"langevin": {"n_steps_each": 2}, "snips": {"n_steps_each": 2}, "scoresde": {"corrector_steps": 1},
           "feng2023": {"particles": 2, "ode_steps": 1, "depth": 2, "hidden": 4}}
COST = {"song2022": (2, 0), "scoresde": (2, 0), "langevin": (2, 0), "snips": (2, 0), "dps": (1, 1),
        "mcg": (1, 1), "pigdm": (1, 1), "recguide": (1, 1), "feng2023": (4, 8)}  # feng2023: per Adam iteration
PROJECTION = ["song2022", "scoresde", "mcg", "ilvr", "ddnm", "ddrm"]


def _run(name, prior, op, y, generator, **kw):
    return samplers.run(name, prior, op, y, noise_std=kw.pop("noise_std", 0.05), steps=kw.pop("steps", STEPS),
                        generator=generator, **{**OPTIONS.get(name, {}), **kw})


def test_registry_lists_every_method_in_the_table():
    assert set(METHODS) == {"song2022", "dps", "langevin", "scoresde", "ddnm", "ddrm", "pigdm", "dds", "reddiff",
                            "mcg", "ilvr", "snips", "recguide", "feng2023"}
    table = samplers.support_table()
    assert all(f"`{m}`" in table for m in METHODS) and "needs an exact SVD" in table
    dds_row = next(line for line in table.splitlines() if line.startswith("| `dds`"))
    assert "unweighted (measured better: samplers.WEIGHTED_NOTE)" in dds_row and "weighted (PWLS) with a dose" in table


@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_image_and_shape(name):
    prior, op, y = mri_problem(0.05, batch=2)
    a = _run(name, prior, op, y, torch.Generator().manual_seed(3))
    b = _run(name, prior, op, y, torch.Generator().manual_seed(3))
    c = _run(name, prior, op, y, torch.Generator().manual_seed(4))
    assert a.shape == (2, 1, 8, 8) and a.dtype == torch.complex128
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", METHODS)
def test_batch_of_four_equals_four_single_runs_with_per_item_generators(name):
    prior, op, y = mri_problem(0.05, batch=4)
    seeds = [11, 12, 13, 14]
    batch = _run(name, prior, op, y, [torch.Generator().manual_seed(s) for s in seeds])
    singles = torch.cat([_run(name, prior, op, y[i:i + 1], [torch.Generator().manual_seed(s)])
                         for i, s in enumerate(seeds)])
    torch.testing.assert_close(batch, singles, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", METHODS)
def test_callback_and_counts(name):
    prior, op, y = mri_problem(0.05, batch=2)
    seen = []
    x, stats = _run(name, prior, op, y, torch.Generator().manual_seed(0), callback=seen.append, return_stats=True)
    assert [d["i"] for d in seen] == list(range(STEPS))
    assert all(d["x"].shape == x.shape and d["denoised"].shape == x.shape and d["sigma"] > 0 for d in seen)
    per_step, backward = COST.get(name, (1, 0))
    assert (stats.nfe, stats.backward_passes) == (per_step * STEPS, backward * STEPS)
    assert stats.seconds > 0


@pytest.mark.parametrize("name", PROJECTION)
@pytest.mark.parametrize("problem", ["mri", "ct"])
def test_projection_methods_reproduce_noiseless_measurements(name, problem):
    """‖A x̂ − y‖/‖y‖ ≤ 1e-3 for noiseless y; CT through the CG pseudo-inverse (DDRM: the dense SVD)."""
    prior, op, y = mri_problem(0.0, 2) if problem == "mri" else ct_problem(0.0, 2, with_svd=name == "ddrm")
    x = _run(name, prior, op, y, torch.Generator().manual_seed(0), noise_std=0.0)
    assert float((op.forward(x) - y).norm() / y.norm()) <= 1e-3


def test_cg_pseudo_inverse_path_matches_the_svd_path():
    _, op_cg, y = ct_problem(0.0, 2, with_svd=False)
    prior, op_svd, _ = ct_problem(0.0, 2, with_svd=True)
    a = _run("song2022", prior, op_cg, y, torch.Generator().manual_seed(5), noise_std=0.0)
    b = _run("song2022", prior, op_svd, y, torch.Generator().manual_seed(5), noise_std=0.0)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["song2022", "scoresde", "mcg", "ilvr"])
def test_the_published_hard_projection_warns_on_noisy_data_where_it_amplifies_noise(name):
    """With ``damped=False`` a method published for noiseless data projects noisy y with A⁺, which amplifies
    the noise by 1/s where singular values s < 1 (CT-like operator, with or without its SVD; RESULTS.md,
    mri-mc-8x): that warns. Not with the default damped projection, not on noiseless data, not where A⁺ is
    a partial isometry (single-coil Cartesian MRI, s ∈ {0, 1})."""
    prior, op_cg, y = ct_problem(0.05, 1, with_svd=False)
    _, op_svd, _ = ct_problem(0.05, 1, with_svd=True)
    for op in (op_cg, op_svd):
        with pytest.warns(UserWarning, match=f"{name} with damped=False assumes noiseless measurements"):
            _run(name, prior, op, y, torch.Generator().manual_seed(0), steps=2, damped=False)
    mri_prior, mri_op, mri_y = mri_problem(0.05, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(name, prior, op_cg, y, torch.Generator().manual_seed(0), steps=2)
        _run(name, prior, op_cg, y, torch.Generator().manual_seed(0), steps=2, noise_std=0.0, damped=False)
        _run(name, mri_prior, mri_op, mri_y, torch.Generator().manual_seed(0), steps=2, damped=False)


@pytest.mark.parametrize("name", ["ddrm", "snips"])
def test_svd_methods_refuse_operators_without_svd(name):
    prior, op, y = ct_problem(0.05, 1, with_svd=False)
    with pytest.raises(MedreconError, match="exact SVD"):
        _run(name, prior, op, y, None)


def test_ccdf_warm_start_runs_the_last_fraction_from_the_given_image():
    prior, op, y = mri_problem(0.0, 2)
    x_init = op.adjoint(y)  # zero-filled
    x, stats = samplers.run("scoresde", prior, op, y, steps=50, start_from=x_init, t0=0.2,
                            generator=torch.Generator().manual_seed(0), return_stats=True)
    assert stats.nfe == 2 * 10
    assert float((op.forward(x) - y).norm() / y.norm()) <= 1e-3
    with pytest.raises(MedreconError, match="t0"):
        samplers.run("scoresde", prior, op, y, start_from=x_init)
    with pytest.raises(MedreconError, match="start_from"):
        samplers.run("scoresde", prior, op, y, steps=4, start_from=x_init[:1], t0=0.5)


def test_bad_input_is_named():
    prior, op, y = mri_problem(0.0, 1)
    with pytest.raises(MedreconError, match="available"):
        samplers.run("nope", prior, op, y)
    with pytest.raises(MedreconError, match=r"\[B, 1, 8, 8\]"):
        samplers.run("dps", prior, op, y[..., :4], steps=2)
    with pytest.raises(MedreconError, match="scale"):
        samplers.run("dps", prior, op, y, steps=2, scael=1.0)
    with pytest.raises(MedreconError, match="noise_std"):
        samplers.run("dps", prior, op, y, steps=2, noise_std=-1.0)


def test_schedules_are_decreasing_and_end_in_zero():
    for s in (schedules.karras(10, 0.002, 80.0), schedules.ve_geometric(10, 0.01, 378.0), schedules.vp_linear(10)):
        assert s[-1] == 0 and bool((s[:-1] > s[1:]).all()) and s.numel() == 11
    k = schedules.karras(5, 0.002, 80.0)
    assert torch.isclose(k[0], torch.tensor(80.0, dtype=k.dtype)) and torch.isclose(k[4], torch.tensor(0.002, dtype=k.dtype))
    vp = schedules.vp_linear(1000)
    assert abs(float(vp[-2]) - 0.01) < 1e-4 and 150 < float(vp[0]) < 160  # σ(t=0) = √(β₀/(1−β₀)), σ(t=999) ≈ 157
    assert schedules.truncate(schedules.ve_geometric(50), 0.2).numel() == 11
    with pytest.raises(ValueError):
        schedules.karras(0)


def test_time_travel_walk_matches_the_published_jump_schedule():
    """RePaint/DDNM ``get_schedule_jump(T=6, L=2, r=2)`` visits t = 5,4,3,2,3,4,3,2,1,0,1,2,1,0,−1, i.e.
    positions N − 1 − t; every move is one level; down moves (evaluations) = N + L(r − 1)⌈(N − L)/L⌉."""
    assert schedules.time_travel(6) == list(range(7))
    assert schedules.time_travel(6, 2, 2) == [0, 1, 2, 3, 2, 1, 2, 3, 4, 5, 4, 3, 4, 5, 6]
    for n, length, repeat in [(100, 5, 2), (50, 10, 3), (7, 3, 4), (3, 5, 2)]:
        walk = schedules.time_travel(n, length, repeat)
        assert walk[0] == 0 and walk[-1] == n and all(abs(a - b) == 1 for a, b in zip(walk, walk[1:]))
        downs = sum(b > a for a, b in zip(walk, walk[1:]))
        assert downs == n + length * (repeat - 1) * max(0, -(-(n - length) // length))
    with pytest.raises(ValueError):
        schedules.time_travel(10, 0, 2)


def test_ddnm_time_travel_costs_its_extra_steps_and_defaults_to_none():
    prior, op, y = mri_problem(0.05, 2)
    plain, st = samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=10, generator=torch.Generator().manual_seed(2),
                             return_stats=True)
    same = samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=10, generator=torch.Generator().manual_seed(2),
                        travel_length=1, travel_repeat=1)
    torch.testing.assert_close(plain, same, rtol=0, atol=0)
    travel, tt = samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=10, generator=torch.Generator().manual_seed(2),
                              travel_length=3, travel_repeat=2, return_stats=True)
    assert st.nfe == 10 and tt.nfe == 10 + 3 * 1 * 3 and not torch.allclose(plain, travel)
    for bad in ({"travel_length": 0}, {"travel_repeat": 0}, {"travel_length": 2.5}):
        with pytest.raises(MedreconError, match="travel_length and travel_repeat must be integers"):
            samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=4, **bad)


@pytest.mark.parametrize("name", ["dps", "pigdm", "mcg", "recguide"])
def test_guided_methods_run_under_a_callers_no_grad(name):
    """The reconstruction pipeline calls samplers inside torch.no_grad(); guidance must still differentiate,
    and give the same image as outside it."""
    prior, op, y = mri_problem(0.05)
    with torch.no_grad():
        a = _run(name, prior, op, y, torch.Generator().manual_seed(3))
    b = _run(name, prior, op, y, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_tuned_preset_is_the_same_as_spelling_its_settings_out():
    """``preset="tuned"`` fills steps, schedule and options from ``METHODS[m].tuned``; what the call gives wins."""
    prior, op, y = mri_problem(0.05, 2)
    tuned = dict(samplers.METHODS["ddnm"].tuned)
    assert tuned["steps"] <= 100  # a fast preset: ≤ 100 NFE
    spelled = dict(tuned)
    steps, schedule = spelled.pop("steps"), spelled.pop("schedule")
    a, stats = samplers.run("ddnm", prior, op, y, noise_std=0.05, preset="tuned", generator=torch.Generator().manual_seed(1),
                            return_stats=True)
    b = samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=steps, schedule=schedule,
                     generator=torch.Generator().manual_seed(1), **spelled)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert stats.nfe == steps
    c, stats = samplers.run("ddnm", prior, op, y, noise_std=0.05, preset="tuned", steps=4, return_stats=True)
    assert stats.nfe == 4
    official = samplers.run("ddnm", prior, op, y, noise_std=0.05, steps=steps, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(official, a)  # the preset changes the schedule


def test_tuned_preset_bad_input_is_named():
    prior, op, y = mri_problem(0.05, 1)
    without = next(k for k, m in samplers.METHODS.items() if m.tuned is None)
    with pytest.raises(MedreconError, match="no tuned preset; methods with one: .*ddnm"):
        samplers.run(without, prior, op, y, preset="tuned")
    with pytest.raises(MedreconError, match="preset must be"):
        samplers.run("ddnm", prior, op, y, preset="fastest")


def test_samples_k_returns_the_mean_and_spread_of_k_runs_from_one_generator_stream():
    """``samples=K``: K runs one after another on the same generator; their mean, their per-pixel
    (unbiased) standard deviation in ``Stats.pixel_std``, and K times the NFE."""
    prior, op, y = mri_problem(0.05, 2)
    g = torch.Generator().manual_seed(7)
    runs = [_run("dps", prior, op, y, g) for _ in range(3)]
    mean, stats = _run("dps", prior, op, y, torch.Generator().manual_seed(7), samples=3, return_stats=True)
    stack = torch.stack(runs)
    torch.testing.assert_close(mean, stack.mean(0), rtol=1e-12, atol=1e-12)
    spread = ((stack - stack.mean(0)).abs() ** 2).sum(0).div(2).sqrt()
    torch.testing.assert_close(stats.pixel_std, spread, rtol=1e-9, atol=1e-12)
    assert stats.samples == 3 and stats.nfe == 3 * STEPS and stats.backward_passes == 3 * STEPS
    assert mean.dtype == runs[0].dtype and stats.pixel_std.dtype == torch.float64
    one, single = _run("dps", prior, op, y, torch.Generator().manual_seed(7), samples=1, return_stats=True)
    torch.testing.assert_close(one, runs[0], rtol=0, atol=0)
    assert single.samples == 1 and single.pixel_std is None


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_samples_bad_input_is_named(bad):
    prior, op, y = mri_problem(0.05, 1)
    with pytest.raises(MedreconError, match="samples must be a positive integer"):
        samplers.run("ddnm", prior, op, y, samples=bad)


@pytest.mark.parametrize("name", ["dps", "mcg", "recguide", "langevin", "reddiff"])
def test_samples_do_not_depend_on_the_global_random_state(name):
    """With explicit generators the samples are the same whatever the global random state: the operator
    norm these samplers divide by is estimated from a fixed start (under global seed 274 the masked
    FFT's float32 norm estimate was 0.99999994 instead of 1.0, and MCG's samples moved by 1e-9)."""
    prior, op, y = mri_problem(0.05, batch=2)
    torch.manual_seed(0)
    a = _run(name, prior, op, y, torch.Generator().manual_seed(5))
    torch.manual_seed(274)
    b = _run(name, prior, op, y, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["dps", "mcg", "recguide", "langevin", "reddiff"])
def test_guidance_steps_do_not_depend_on_the_operators_units(name):
    """DPS, MCG, reconstruction guidance, annealed Langevin and RED-diff published step sizes or weights for
    operators of norm ≤ 1 and run on ``A/‖A‖``: the same problem written with ``50·A`` (``y`` and ``σ_y`` in the same units,
    as a Radon transform of ‖A‖ ≈ 53 is) gives the same samples; unscaled, reconstruction guidance gave
    NaN on CT and Langevin kept its start noise."""
    prior, op, y = ct_problem(0.05, batch=2)
    a = _run(name, prior, op, y, torch.Generator().manual_seed(5), noise_std=0.05)
    b = _run(name, prior, 50.0 * op, 50.0 * y, torch.Generator().manual_seed(5), noise_std=2.5)
    assert torch.isfinite(b).all()
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
