"""Metrics follow fastMRI's evaluate.py: volume-max data range, whole-volume NMSE/PSNR, per-slice SSIM mean."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from medrecon import MedreconError, metrics


def test_nmse_and_psnr_hand_computed():
    t = np.zeros((1, 8, 8))
    t[0, 0, 0] = 2.0  # ‖t‖² = 4, max = 2
    p = t.copy()
    p[0, 1, 1] = 0.5  # error energy 0.25 over 64 pixels
    assert metrics.nmse(t, p) == pytest.approx(0.25 / 4)
    assert metrics.psnr(t, p) == pytest.approx(10 * np.log10(4 / (0.25 / 64)))
    assert metrics.psnr(t, p, data_range=1.0) == pytest.approx(10 * np.log10(1 / (0.25 / 64)))


def test_psnr_uses_volume_max_not_slice_max():
    rng = np.random.default_rng(0)
    t = rng.random((2, 16, 16))
    t[1] *= 0.1  # the second slice is dim: a per-slice range would differ
    p = t + 0.01
    assert metrics.psnr(t, p) == pytest.approx(10 * np.log10(t.max() ** 2 / 1e-4))


def test_ssim_is_mean_of_slices_with_volume_range():
    rng = np.random.default_rng(1)
    t = rng.random((3, 20, 20))
    p = t + 0.05 * rng.standard_normal(t.shape)
    want = np.mean([structural_similarity(t[i], p[i], data_range=t.max()) for i in range(3)])
    assert metrics.ssim(t, p) == pytest.approx(want)
    assert metrics.ssim(t, t) == pytest.approx(1.0)


def test_registry_torch_inputs_and_2d():
    t = torch.rand(16, 16, dtype=torch.float64)
    out = metrics.evaluate(t, t * 0.9)
    assert set(out) == set(metrics.METRICS) == {"nmse", "psnr", "ssim"}
    assert out["nmse"] == pytest.approx(0.01)


def test_bad_inputs():
    with pytest.raises(MedreconError, match="shape"):
        metrics.psnr(np.ones((2, 8, 8)), np.ones((2, 8, 9)))
    with pytest.raises(MedreconError, match="magnitude"):
        metrics.nmse(np.ones((8, 8), complex), np.ones((8, 8), complex))
    with pytest.raises(MedreconError, match="data range"):
        metrics.psnr(np.zeros((8, 8)), np.ones((8, 8)))
