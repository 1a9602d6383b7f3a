"""Sampling masks: the fastMRI definitions (centre block, acceleration formulas, offsets, seeding),
1-D Gaussian variable density and sigpy's Poisson disc.

``_fastmri_*`` below are oracles written from the definitions in fastMRI's
``fastmri/data/subsample.py`` (``RandomMaskFunc``, ``EquiSpacedMaskFunc``,
``EquispacedMaskFractionFunc``, MIT licence): with one (center_fraction, acceleration) pair their
``__call__(shape, seed=s)`` seeds ``np.random.RandomState`` with s and draws in this order.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from physics import masks

W = 368  # the fastMRI knee width


def _fastmri_center(width: int, cf: float) -> np.ndarray:
    n = int(round(width * cf))
    m = np.zeros(width, dtype=bool)
    pad = (width - n + 1) // 2
    m[pad : pad + n] = True
    return m


def _fastmri_random(width: int, acc: float, cf: float, seed) -> np.ndarray:
    rng = np.random.RandomState(seed)
    n = int(round(width * cf))
    prob = (width / acc - n) / (width - n)
    return (rng.uniform(size=width) < prob) | _fastmri_center(width, cf)


def _fastmri_equispaced_fraction(width: int, acc: float, cf: float, seed=None, offset=None) -> np.ndarray:
    n = int(round(width * cf))
    adjusted = acc * (n - width) / (n * acc - width)
    if offset is None:
        offset = np.random.RandomState(seed).randint(0, high=round(adjusted))
    m = np.zeros(width, dtype=bool)
    m[np.around(np.arange(offset, width - 1, adjusted)).astype(np.uint)] = True
    return m | _fastmri_center(width, cf)


# -- centre block ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "width,cf,start,count",
    [(368, 0.08, 170, 29), (368, 0.04, 177, 15), (320, 0.08, 147, 26), (9, 0.3, 3, 3), (10, 0.0, 5, 0)],
)
def test_center_block_is_round_width_times_fraction(width, cf, start, count):
    s = masks.center_slice(width, cf)
    assert (s.start, s.stop - s.start) == (start, count)
    assert count == round(width * cf)
    if count:
        assert s.start <= width // 2 < s.stop  # covers the DC column of the centred layout
    for fn in (masks.random, masks.equispaced_fraction, masks.gaussian_1d):
        assert bool(fn(width, 2, cf, seed=0)[s].all())


# -- equispaced fraction ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "acc,cf,adjusted,counts",
    [
        # counts[offset] = sampled columns at W = 368; R = 368 / count.
        (4, 0.08, 1356 / 252, [93, 93, 92, 91, 91]),
        (8, 0.04, 2824 / 248, [47, 47, 47, 46, 46, 46, 45, 45, 45, 45, 46]),
    ],
)
def test_equispaced_fraction_acceleration_at_width_368(acc, cf, adjusted, counts):
    n = round(W * cf)
    assert acc * (n - W) / (n * acc - W) == pytest.approx(adjusted)  # R_adj = 5.381 and 11.387
    got = [int(masks.equispaced_fraction(W, acc, cf, offset=o).sum()) for o in range(round(adjusted))]
    assert got == counts
    # The R ≈ 4.04 / 8.18 are the largest achievable accelerations (offsets 3-4 and 6-9).
    assert W / min(counts) == pytest.approx({4: 4.044, 8: 8.178}[acc], abs=1e-3)
    # Averaged over the offsets the column count is W / R to within one column.
    assert abs(np.mean(counts) - W / acc) < 1
    for o in range(round(adjusted)):
        np.testing.assert_array_equal(
            masks.equispaced_fraction(W, acc, cf, offset=o).numpy(), _fastmri_equispaced_fraction(W, acc, cf, offset=o)
        )


@pytest.mark.parametrize("seed", [0, 1, 7, (102, 105, 108, 101)])
def test_equispaced_fraction_seeded_like_fastmri(seed):
    for acc, cf in [(4, 0.08), (8, 0.04)]:
        np.testing.assert_array_equal(
            masks.equispaced_fraction(W, acc, cf, seed=seed).numpy(), _fastmri_equispaced_fraction(W, acc, cf, seed=seed)
        )


# -- random ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("acc,cf", [(4, 0.08), (8, 0.04)])
def test_random_expects_width_over_acceleration_lines(acc, cf):
    n = round(W * cf)
    p = (W / acc - n) / (W - n)
    seeds = range(300)
    counts = np.array([int(masks.random(W, acc, cf, seed=s).sum()) for s in seeds])
    # count = n + Binomial(W, p) restricted to the outer columns, so E = W / R exactly.
    sd_of_mean = math.sqrt((W - n) * p * (1 - p) / len(seeds))
    assert abs(counts.mean() - W / acc) < 4 * sd_of_mean
    assert counts.min() >= n


@pytest.mark.parametrize("seed", [0, 3, (1, 2, 3)])
def test_random_seeded_like_fastmri(seed):
    np.testing.assert_array_equal(masks.random(W, 4, 0.08, seed=seed).numpy(), _fastmri_random(W, 4, 0.08, seed))


@pytest.mark.parametrize("family", ["random", "equispaced_fraction", "gaussian_1d"])
def test_same_seed_same_mask_different_seeds_differ(family):
    fn = getattr(masks, family)
    volume_seed = tuple(map(ord, "file1000001.h5"))  # fastMRI seeds per file: every slice shares it
    a, b = fn(W, 4, 0.08, seed=volume_seed), fn(W, 4, 0.08, seed=volume_seed)
    assert a.dtype == torch.bool and a.shape == (W,)
    assert torch.equal(a, b)
    distinct = {tuple(fn(W, 4, 0.08, seed=s).tolist()) for s in range(12)}
    assert len(distinct) >= (5 if family == "equispaced_fraction" else 12)  # 5 possible offsets


# -- equispaced ---------------------------------------------------------------------------------------
def test_equispaced_is_every_rth_column_plus_centre():
    for offset in range(4):
        m = masks.equispaced(W, 4, 0.08, offset=offset)
        expected = _fastmri_center(W, 0.08)
        expected[offset::4] = True
        np.testing.assert_array_equal(m.numpy(), expected)
    offsets = {int(np.flatnonzero(masks.equispaced(W, 4, 0.0, seed=s).numpy())[0]) for s in range(20)}
    assert offsets == {0, 1, 2, 3}
    assert masks.equispaced(W, 4, 0.0, seed=5).sum() == W // 4  # no centre block: exactly W / R
    drawn = int(np.random.RandomState(5).randint(0, 4))  # fastMRI: offset = randint(0, R) from RandomState(seed)
    assert torch.equal(masks.equispaced(W, 4, 0.0, seed=5), masks.equispaced(W, 4, 0.0, offset=drawn))


# -- Gaussian variable density -----------------------------------------------------------------------
def test_gaussian_1d_exact_count_and_variable_density():
    freq = np.zeros(W)
    for s in range(40):
        m = masks.gaussian_1d(W, 4, 0.08, seed=s)
        assert int(m.sum()) == round(W / 4)
        assert masks.acceleration_of(m) == pytest.approx(4.0)
        freq += m.numpy()
    centre = masks.center_slice(W, 0.08)
    near = np.r_[centre.start - 30 : centre.start, centre.stop : centre.stop + 30]
    far = np.r_[0:30, W - 30 : W]
    assert freq[near].mean() > 4 * freq[far].mean()  # density falls away from the centre
    # A wide Gaussian approaches uniform density: the far columns are sampled much more often.
    wide = sum(masks.gaussian_1d(W, 4, 0.08, seed=s, std=10 * W).numpy() for s in range(40))
    assert wide[far].mean() > 2 * freq[far].mean()


# -- Poisson disc -------------------------------------------------------------------------------------
def test_poisson_disc_acceleration_calibration_and_seed():
    shape, acc, calib = (64, 48), 4.0, (12, 10)
    m = masks.poisson_disc(shape, acc, calib=calib, seed=3)
    assert m.dtype == torch.bool and m.shape == shape
    assert abs(masks.acceleration_of(m) - acc) < 0.1  # sigpy's tolerance
    r0, c0 = shape[0] // 2 - calib[0] // 2, shape[1] // 2 - calib[1] // 2
    assert bool(m[r0 : r0 + calib[0], c0 : c0 + calib[1]].all())
    assert torch.equal(m, masks.poisson_disc(shape, acc, calib=calib, seed=3))
    assert not torch.equal(m, masks.poisson_disc(shape, acc, calib=calib, seed=4))


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: masks.random(W, 0.5, 0.08), "acceleration"),
        (lambda: masks.random(W, 4, 1.0), "center_fraction"),
        (lambda: masks.equispaced_fraction(W, 4, -0.1), "center_fraction"),
        (lambda: masks.random(0, 4, 0.08), "width"),
        (lambda: masks.random(W, 8, 0.2), "74 columns"),  # centre block larger than W / R
        (lambda: masks.equispaced_fraction(W, 8, 0.2), "expected num_low"),
        (lambda: masks.equispaced(W, 2.5, 0.08), "integer"),
        (lambda: masks.equispaced(W, 4, 0.08, offset=4), r"\[0, 4\)"),
        (lambda: masks.equispaced_fraction(W, 4, 0.08, offset=5), r"\[0, round\(R_adj\) = 5\)"),
        (lambda: masks.gaussian_1d(W, 8, 0.3), "centre block"),
        (lambda: masks.gaussian_1d(W, 4, 0.08, std=0), "std"),
        (lambda: masks.poisson_disc((64,), 4), "shape"),
        (lambda: masks.poisson_disc((64, 48), 1.0), "> 1"),
        (lambda: masks.poisson_disc((64, 48), 4, calib=(80, 4)), "calib"),
        (lambda: masks.acceleration_of(torch.zeros(5, dtype=torch.bool)), "samples nothing"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
