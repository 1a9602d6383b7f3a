"""Specification of the CT physics (``physics.ct``): geometry conventions, the matched Joseph pair,
agreement with scikit-image's Radon transform, and FBP quality.

PSNR here is ``10·log10(max(gt)² / mean((gt - rec)²))`` (data range = max of the ground truth).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import radon as sk_radon
from skimage.transform import resize

from physics import FanBeam, ParallelBeam, Radon
from physics import ct


def _phantom(n: int) -> np.ndarray:
    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)


def _psnr(gt: np.ndarray, rec: np.ndarray) -> float:
    return float(10 * np.log10(gt.max() ** 2 / np.mean((gt - rec) ** 2)))


def _dense(op: Radon, adjoint: bool) -> torch.Tensor:
    """The operator as a dense float64 matrix, built column by column."""
    shape = op.oshape if adjoint else op.ishape
    size = int(np.prod(shape))
    basis = torch.eye(size, dtype=torch.float64).reshape(size, *shape)
    batch = op.batch or size
    out = op.adjoint(basis) if adjoint else op(basis)
    assert batch == size
    return out.reshape(size, -1).T


# -- conventions and the matched pair -----------------------------------------------------------
def test_matches_skimage_radon_on_shepp_logan():
    n = 127  # odd: skimage rotates about pixel n // 2, which is then the image centre
    img = _phantom(n)
    degrees = np.linspace(0.0, 180.0, 45, endpoint=False)
    reference = sk_radon(img, theta=degrees, circle=True)  # [detectors, views]
    op = Radon(ParallelBeam(n, torch.tensor(np.deg2rad(degrees)), detectors=n))
    ours = op(torch.tensor(img)[None, None])[0, 0].T.numpy()
    corr = np.corrcoef(reference.ravel(), ours.ravel())[0, 1]
    assert corr > 0.999, corr
    # Line integrals in pixel units: every view carries the image's mass (Joseph: to ~1e-3).
    np.testing.assert_allclose(ours.sum(0), img.sum(), rtol=2e-3)


def test_mirrored_angle_conventions_would_fail_the_skimage_check():
    """The correlation test can fail: a flipped detector axis (θ → θ + π) gives a visibly worse match."""
    n = 63
    img = _phantom(n)
    degrees = np.linspace(0.0, 180.0, 30, endpoint=False)
    reference = sk_radon(img, theta=degrees, circle=True)
    flipped = Radon(ParallelBeam(n, torch.tensor(np.deg2rad(degrees)) + math.pi, detectors=n))
    ours = flipped(torch.tensor(img)[None, None])[0, 0].T.numpy()
    assert np.corrcoef(reference.ravel(), ours.ravel())[0, 1] < 0.99


def test_disk_projects_to_chord_lengths():
    n, r = 64, 20.0
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    disk = ((x[None, :] ** 2 + x[:, None] ** 2) <= r**2).double()[None, None]
    op = Radon(ParallelBeam(n, torch.tensor([0.3, 1.1]), detector_spacing=1.0))
    s = op.geometry.detector_positions()
    chord = 2 * torch.sqrt((r**2 - s**2).clamp_min(0))
    got = op(disk)[0, 0]
    inner = s.abs() < r - 2
    assert (got[:, inner] - chord[inner]).abs().max() < 1.5  # pixelated boundary: within a pixel or so


@pytest.mark.parametrize(
    "geometry",
    [
        ParallelBeam(7, torch.tensor([0.0, 0.4, math.pi / 4, 2.0, 3.5]), detector_spacing=0.6),
        FanBeam(6, torch.tensor([0.1, 1.7, 4.0]), source_distance=6.0, detector_distance=3.0),
        FanBeam(6, torch.tensor([0.0, 0.8, 2.5]), source_distance=6.0, detector_distance=1.0, detector="flat",
                detector_spacing=0.5),
    ],
    ids=["parallel", "fan-equiangular", "fan-flat"],
)
def test_adjoint_is_the_exact_transpose_as_dense_matrices(geometry):
    """The pixel-driven adjoint reproduces every entry of the ray-driven forward (no missed taps)."""
    op = Radon(geometry)
    a, at = _dense(op, adjoint=False), _dense(op, adjoint=True)
    assert a.abs().max() > 0.5
    torch.testing.assert_close(at, a.T, rtol=0, atol=1e-12)


def test_joseph_entries_follow_the_footprint_formula():
    """A[r, P] = (1/m)·max(0, 1 - |δ|/m) for a parallel ray (module docstring)."""
    theta, n = 0.3, 5
    op = Radon(ParallelBeam(n, torch.tensor([theta], dtype=torch.float64), detectors=3, detector_spacing=0.8))
    a = _dense(op, adjoint=False)  # [detectors, pixels]
    c = (n - 1) / 2
    i, j = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    t = (j - c) * math.cos(theta) + (c - i) * math.sin(theta)
    m = max(abs(math.cos(theta)), abs(math.sin(theta)))
    s = op.geometry.detector_positions()
    expected = (1 / m) * (1 - (s[:, None] - t.reshape(1, -1).double()).abs() / m).clamp_min(0)
    torch.testing.assert_close(a, expected, rtol=0, atol=1e-12)


def test_per_item_angles_equal_separate_operators():
    angles = torch.tensor([[0.1, 0.9, 2.0], [0.5, 1.5, 3.0]], dtype=torch.float64)
    op = Radon(ParallelBeam(12, angles))
    assert op.batch == 2
    x = torch.randn(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    y = op(x)
    for b in range(2):
        single = Radon(ParallelBeam(12, angles[b]))
        torch.testing.assert_close(y[b : b + 1], single(x[b : b + 1]))
        torch.testing.assert_close(op.adjoint(y)[b : b + 1], single.adjoint(y[b : b + 1]))
    with pytest.raises(ValueError, match="batch of 2"):
        op(x[:1])


# -- FBP ------------------------------------------------------------------------------------------
def test_parallel_fbp_shepp_logan_256_reaches_28_db():
    n = 256
    img = _phantom(n)
    op = Radon(ParallelBeam(n, torch.arange(180, dtype=torch.float64) * math.pi / 180))
    sino = op(torch.tensor(img, dtype=torch.float32)[None, None])
    assert _psnr(img, op.fbp(sino, filter="ramp")[0, 0].numpy()) >= 28.0  # measured 30.7 dB (skimage iradon: 30.8)
    assert _psnr(img, op.fbp(sino, filter="shepp-logan")[0, 0].numpy()) >= 28.0  # measured 30.0 dB


def test_fbp_of_a_disk_recovers_its_value_for_every_filter():
    n = 64
    x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    disk = ((x[None, :] ** 2 + x[:, None] ** 2) <= 15.0**2).double()[None, None]
    op = Radon(ParallelBeam(n, torch.arange(90, dtype=torch.float64) * math.pi / 90))
    sino = op(disk)
    for name in ct.FILTERS:
        rec = op.fbp(sino, filter=name)[0, 0]
        assert abs(float(rec[n // 2 - 5 : n // 2 + 5, n // 2 - 5 : n // 2 + 5].mean()) - 1.0) < 0.02, name


@pytest.mark.parametrize("detector, bound", [("equiangular", 29.5), ("flat", 29.5)])
def test_fan_fbp_full_and_short_scan(detector, bound):
    """Fan FBP at 128², R_s = R_d = 256: 360 views over 2π (measured 30.4 dB equiangular, 30.9 dB flat)
    and a Parker short scan of π + 2γ_max (measured 30.3 / 30.9 dB)."""
    n = 128
    img = _phantom(n)
    x = torch.tensor(img, dtype=torch.float32)[None, None]
    beta = torch.arange(360, dtype=torch.float64) * 2 * math.pi / 360
    full = Radon(FanBeam(n, beta, 2.0 * n, 2.0 * n, detector=detector))
    assert _psnr(img, full.fbp(full(x))[0, 0].numpy()) >= bound
    views = math.ceil((math.pi + 2 * full.geometry.half_fan_angle()) / (2 * math.pi / 360)) + 1
    short = Radon(FanBeam(n, beta[:views] + 0.7, 2.0 * n, 2.0 * n, detector=detector))
    assert _psnr(img, short.fbp(short(x))[0, 0].numpy()) >= bound


def test_parker_weights_of_conjugate_rays_sum_to_one():
    gamma = torch.linspace(-0.2, 0.2, 9, dtype=torch.float64)
    span = math.pi + 2 * 0.25
    beta = torch.linspace(0, span, 400, dtype=torch.float64)
    gap = float(beta[1] - beta[0])
    w = ct._parker_weights(beta, gamma, gap)  # [V, D]
    b0 = beta + gap / 2  # the β used inside (measured from the scan start plus half a gap)
    for k in range(gamma.shape[0]):
        conj_beta = b0 + math.pi - 2 * gamma[k]
        conj = ct._parker_weights(beta, -gamma[k : k + 1], gap)[:, 0]
        inside = conj_beta < float(b0.max())
        interp = np.interp(conj_beta[inside].numpy(), b0.numpy(), conj.numpy())
        np.testing.assert_allclose(w[inside, k].numpy() + interp, 1.0, atol=2e-2)


# -- memory ---------------------------------------------------------------------------------------
def test_operator_holds_only_geometry_state():
    """256²/180 views: the operator stores O(views + detectors) numbers, no per-angle grids."""
    op = Radon(ParallelBeam(256, torch.arange(180, dtype=torch.float64) * math.pi / 180))
    held = [v for obj in (op, op.geometry) for v in vars(obj).values() if isinstance(v, torch.Tensor)]
    assert sum(t.numel() for t in held) <= 180 + op.geometry.detectors
    assert ct._CHUNK_ELEMENTS <= 1 << 22  # the bound on the temporaries of one chunk of views


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ParallelBeam(16, torch.tensor([0.0, float("nan")])), "finite"),
        (lambda: ParallelBeam(16, torch.zeros(2, 3, 4)), r"\[views\] or \[B, views\].*\(2, 3, 4\)"),
        (lambda: ParallelBeam(16, torch.zeros(0)), "views ≥ 1"),
        (lambda: ParallelBeam(16, torch.zeros(3), detectors=0), "detectors must be an integer ≥ 1"),
        (lambda: ParallelBeam(16, torch.zeros(3), detector_spacing=-1.0), "detector_spacing"),
        (lambda: ParallelBeam(1, torch.zeros(3)), "image_size"),
        (lambda: FanBeam(16, torch.zeros(3), source_distance=10.0, detector_distance=5.0), "inside the image circle"),
        (lambda: FanBeam(16, torch.zeros(3), source_distance=40.0, detector_distance=-1.0), "detector_distance"),
        (lambda: FanBeam(16, torch.zeros(3), 40.0, 5.0, detector="curved"), "'equiangular' or 'flat'"),
        (lambda: FanBeam(16, torch.zeros(3), 40.0, 5.0, detectors=200), "less than ±π/2"),
        (lambda: Radon("parallel"), "ParallelBeam or FanBeam"),
    ],
)
def test_bad_geometry_raises(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_fbp_input_raises():
    op = Radon(ParallelBeam(8, torch.tensor([0.0, 1.0])))
    good = torch.zeros(1, 1, 2, op.geometry.detectors)
    with pytest.raises(ValueError, match="filter must be one of"):
        op.fbp(good, filter="butterworth")
    with pytest.raises(ValueError, match=r"\(1, 1, 3, 15\)"):
        op.fbp(torch.zeros(1, 1, 3, 15))
    with pytest.raises(ValueError, match="float32/float64"):
        op.fbp(good.to(torch.int64))
