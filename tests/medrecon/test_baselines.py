"""Classical baselines on small phantoms: the regularised methods must beat the linear ones."""
import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

import physics
from medrecon import MedreconError, baselines, metrics
from physics import masks


def phantom(n: int) -> np.ndarray:
    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float32)


def psnr(gt: np.ndarray, x: torch.Tensor, lo: float = 0.0) -> float:
    return metrics.psnr(gt[None] - lo, x.abs()[:, 0].numpy() - lo if x.is_complex() else x[:, 0].numpy() - lo,
                        data_range=float(gt.max()) - lo)


@pytest.fixture(scope="module")
def mri_case():
    gt = phantom(64)
    op = physics.SingleCoilMRI(masks.random(64, 4, 0.08, seed=0)[None], shape=(64, 64))
    x = torch.from_numpy(gt)[None, None].to(torch.complex64)
    return gt, op, op(x)


def test_gradient_adjoint_is_matched():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 7, 9, dtype=torch.float64, generator=g)
    q = torch.randn(2, 1, 2, 7, 9, dtype=torch.float64, generator=g)
    lhs = (baselines.gradient(x) * q).sum()
    rhs = (x * baselines.gradient_adjoint(q)).sum()
    assert float(abs(lhs - rhs)) < 1e-10 * float(abs(lhs))


def test_mri_tv_and_l1_beat_zero_filled(mri_case):
    gt, op, y = mri_case
    zf = psnr(gt, baselines.run("zero-filled", op, y))
    assert psnr(gt, baselines.run("tv", op, y)) > zf + 3.0
    assert psnr(gt, baselines.run("l1-wavelet", op, y, iterations=60)) > zf + 0.5


def test_weights_are_scale_aware(mri_case):
    gt, op, y = mri_case
    a = baselines.run("tv", op, y, iterations=50)
    b = baselines.run("tv", op, 1000.0 * y, iterations=50)
    torch.testing.assert_close(b / 1000.0, a, rtol=1e-3, atol=1e-4)


def test_sense_cg_recovers_fully_sampled_multicoil():
    gt = phantom(32)
    maps = physics.coils.birdcage(4, 32, 32)
    op = physics.MultiCoilMRI(torch.ones(1, 32, dtype=torch.bool), maps)
    x = torch.from_numpy(gt)[None, None].to(torch.complex64)
    rec = baselines.run("sense", op, op(x), damping=0.0)
    torch.testing.assert_close(rec, x, atol=1e-3, rtol=0)


def test_ct_tv_beats_fbp_sparse_view():
    n = 48
    gt = phantom(n) * 1000.0 - 1000.0  # HU-like values
    angles = torch.arange(23, dtype=torch.float64) * np.pi / 23
    op = physics.Radon(physics.ParallelBeam(image_size=n, angles=angles))
    y = op(torch.from_numpy(gt)[None, None])
    lo = float(gt.min())
    f = psnr(gt, baselines.run("fbp", op, y, modality="ct"), lo)
    t = psnr(gt, baselines.run("tv", op, y, modality="ct", iterations=15), lo)
    assert t > f + 3.0


def test_unknown_method_and_wrong_modality(mri_case):
    _, op, y = mri_case
    with pytest.raises(MedreconError, match="unknown classical method 'magic'"):
        baselines.run("magic", op, y)
    with pytest.raises(MedreconError, match="'fbp' does not apply to MRI"):
        baselines.run("fbp", op, y, modality="mri")
