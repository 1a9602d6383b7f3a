"""Coil tools: birdcage simulation, ESPIRiT map recovery, RSS and SVD coil compression."""
from __future__ import annotations

import numpy as np
import pytest
import sigpy.mri
import torch

from physics import MultiCoilMRI, coils, fft2c, ifft2c, masks


def _phantom(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth complex ellipse ``[1, 1, H, W]`` (complex128) and its support ``[H, W]``."""
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, h, dtype=torch.float64), torch.linspace(-1, 1, w, dtype=torch.float64), indexing="ij"
    )
    support = (yy / 0.8) ** 2 + (xx / 0.7) ** 2 < 1
    img = support * (1 + 0.5 * torch.cos(3 * xx)) * torch.exp(1j * 0.7 * yy)
    return img[None, None], support


def _complex(shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    re, im = torch.randn((2, *shape), dtype=torch.float64, generator=g)
    return torch.complex(re, im)


# -- birdcage --------------------------------------------------------------------------------------
def test_birdcage_layout_normalisation_and_sigpy_equality():
    maps = coils.birdcage(6, 20, 14, r=1.8)
    assert maps.shape == (1, 6, 20, 14) and maps.dtype == torch.complex64
    torch.testing.assert_close(coils.rss(maps, dim=1), torch.ones(1, 20, 14))  # Σ_c |S_c|² = 1
    ref = sigpy.mri.birdcage_maps((6, 20, 14), r=1.8)
    np.testing.assert_allclose(coils.birdcage(6, 20, 14, r=1.8, dtype=torch.complex128)[0].numpy(), ref, rtol=1e-12)
    # Coils differ: each is brightest near its own position on the ring.
    peaks = {int(m.abs().argmax()) for m in maps[0]}
    assert len(peaks) == 6


def test_birdcage_bad_arguments():
    with pytest.raises(ValueError, match="positive ints"):
        coils.birdcage(0, 8, 8)
    with pytest.raises(ValueError, match="r must exceed 1"):
        coils.birdcage(4, 8, 8, r=0.5)
    with pytest.raises(ValueError, match="complex64"):
        coils.birdcage(4, 8, 8, dtype=torch.float32)


# -- ESPIRiT -----------------------------------------------------------------------------------------
def test_espirit_recovers_birdcage_maps_up_to_a_pixel_phase():
    h, w, n_coils = 48, 40, 8
    img, support = _phantom(h, w)
    maps = coils.birdcage(n_coils, h, w, dtype=torch.complex128)
    k_full = fft2c(maps * img)
    # Slice 2 is undersampled outside a 24-column centre (the calibration block stays complete).
    k_under = k_full * masks.equispaced(w, 3, 0.6, offset=1)
    kspace = torch.cat([k_full, k_under]).to(torch.complex64)
    est = coils.espirit(kspace, calib_width=24)
    assert est.shape == kspace.shape and est.dtype == torch.complex64 and est.device == kspace.device
    est = est.to(torch.complex128)
    for b in range(2):
        # |⟨S_est, S_true⟩| per pixel: 1 when equal up to a phase (both have unit norm on the support).
        corr = (est[b].conj() * maps[0]).sum(0).abs()[support]
        assert float(corr.min()) > 0.999, f"slice {b}: min |<S_est, S_true>| = {float(corr.min()):.5f}"
        norms = coils.rss(est[b : b + 1])[0][support]
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-5)
    # Far outside the object the eigenvalue test crops the maps to zero.
    assert bool((est[:, :, 0, :] == 0).all())
    # The maps make SENSE consistent with the data: A(x) reproduces the k-space on the support.
    x_hat = (est[:1].conj() * ifft2c(k_full)).sum(1, keepdim=True)
    torch.testing.assert_close(x_hat.abs()[0, 0][support], img.abs()[0, 0][support], rtol=0, atol=1e-3)


def test_espirit_equals_sigpy_espiritcalib_on_the_support():
    """Same calibration, kernels, normalisation, phase reference and crop as sigpy; sigpy's power
    method converged (1000 iterations) reaches our exact eigenvectors."""
    from sigpy.mri.app import EspiritCalib

    h, w = 40, 46
    img, _ = _phantom(h, w)
    k = fft2c(coils.birdcage(6, h, w, dtype=torch.complex128) * img)
    k = k + 1e-3 * _complex(k.shape, 3)
    ours, eig = coils.espirit(k, calib_width=16, kernel_width=5, return_eigenvalues=True)
    ref = torch.from_numpy(EspiritCalib(k[0].numpy(), calib_width=16, kernel_width=5, max_iter=1000, show_pbar=False).run())
    support = ref.abs().sum(0) > 0
    assert torch.equal(support, ours[0].abs().sum(0) > 0) and torch.equal(support, eig[0] > 0.95)
    torch.testing.assert_close(ours[0][:, support], ref[:, support], rtol=0, atol=1e-6)


def test_espirit_kernel_wider_than_half_the_image_wraps_like_sigpy():
    """Kernel cross-correlation lags beyond the image wrap around (2·kernel_width − 1 > H here)."""
    from sigpy.mri.app import EspiritCalib

    img, _ = _phantom(16, 20)
    k = fft2c(coils.birdcage(4, 16, 20, dtype=torch.complex128) * img) + 1e-3 * _complex((1, 4, 16, 20), 4)
    _, eig = coils.espirit(k, calib_width=12, kernel_width=9, return_eigenvalues=True)
    _, ref = EspiritCalib(k[0].numpy(), calib_width=12, kernel_width=9, max_iter=1000, show_pbar=False,
                          output_eigenvalue=True).run()
    torch.testing.assert_close(eig, torch.from_numpy(ref).real.to(eig.dtype), rtol=0, atol=1e-6)


def test_espirit_rectangular_calibration_uses_the_whole_acs_band():
    """With 10 fully sampled centre columns, a 24 × 10 calibration region gives better maps than 10 × 10."""
    h, w, n_coils = 64, 64, 8
    img, support = _phantom(h, w)
    maps = coils.birdcage(n_coils, h, w, dtype=torch.complex128)
    k = fft2c(maps * img)
    k = (k + 2e-3 * _complex(k.shape, 5)) * masks.equispaced(w, 4, 10 / w, offset=0)

    def error(est):
        return float((1 - (est[0].conj() * maps[0]).sum(0).abs())[support].mean())

    square = coils.espirit(k, calib_width=10, kernel_width=5)
    rect = coils.espirit(k, calib_width=(24, 10), kernel_width=5)
    assert error(rect) < 0.5 * error(square), (error(rect), error(square))


def test_espirit_is_batched_over_slices():
    h, w = 32, 32
    img, _ = _phantom(h, w)
    k = fft2c(coils.birdcage(4, h, w, dtype=torch.complex128) * img).to(torch.complex64)
    k2 = torch.cat([k, 2 * k.roll(1, dims=-1)])
    both = coils.espirit(k2, calib_width=16)
    torch.testing.assert_close(both[1:], coils.espirit(k2[1:], calib_width=16))
    torch.testing.assert_close(both[:1], coils.espirit(k, calib_width=16))


def test_espirit_bad_input():
    with pytest.raises(ValueError, match=r"\[B, coils, H, W\].*\(4, 16, 16\)"):
        coils.espirit(torch.zeros(4, 16, 16, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex"):
        coils.espirit(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"\(rows, cols\) <= \(H, W\) = \(16, 20\).*calib_width=24"):
        coils.espirit(torch.zeros(1, 4, 16, 20, dtype=torch.complex64), calib_width=24)
    with pytest.raises(ValueError, match=r"kernel_width < calibration rows, cols.*kernel_width=8, calib_width=\(16, 6\)"):
        coils.espirit(torch.zeros(1, 4, 16, 20, dtype=torch.complex64), calib_width=(16, 6), kernel_width=8)


# -- RSS ---------------------------------------------------------------------------------------------
def test_rss_of_unit_norm_coil_images_is_the_magnitude():
    img = _complex((2, 1, 10, 12), 1)
    maps = coils.birdcage(5, 10, 12, dtype=torch.complex128)
    out = coils.rss(maps * img)
    assert out.shape == (2, 10, 12) and not out.is_complex()
    torch.testing.assert_close(out, img.abs()[:, 0])
    assert coils.rss(maps * img, keepdim=True).shape == (2, 1, 10, 12)
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(coils.rss(x, dim=0), torch.tensor([3.0, 4.0]))
    torch.testing.assert_close(coils.rss(x, dim=1), torch.tensor([5.0, 0.0]))
    with pytest.raises(ValueError, match="out of range"):
        coils.rss(x, dim=2)


# -- coil compression ---------------------------------------------------------------------------------
def test_coil_compression_keeps_the_dominant_energy():
    c, h, w = 8, 16, 12
    maps = coils.birdcage(c, h, w, dtype=torch.complex128)
    k = fft2c(maps * _complex((2, 1, h, w), 2))
    energy = k.abs().square().sum(dim=(1, 2, 3))
    for n in (1, 3, 8):
        kc, a = coils.coil_compress(k, n)
        assert kc.shape == (2, n, h, w) and a.shape == (2, n, c) and kc.dtype == k.dtype
        torch.testing.assert_close(a @ a.mH, torch.eye(n, dtype=a.dtype).expand(2, n, n))  # orthonormal rows
        kept = kc.abs().square().sum(dim=(1, 2, 3))
        # Retained energy = sum of the n largest squared singular values of the coils x pixels matrix.
        sv = torch.linalg.svdvals(k.reshape(2, c, -1))
        torch.testing.assert_close(kept, sv[:, :n].square().sum(1))
        # Optimal: no worse than keeping any n physical coils (here the n strongest).
        strongest = k.abs().square().sum(dim=(2, 3)).sort(dim=1, descending=True).values[:, :n].sum(1)
        assert bool((kept >= strongest - 1e-9 * energy).all())
    torch.testing.assert_close(coils.coil_compress(k, c)[0].abs().square().sum(dim=(1, 2, 3)), energy)  # all coils: lossless


def test_coil_compression_is_exact_for_low_rank_arrays_and_commutes_with_sense():
    # 8 physical coils that are mixtures of 3: 3 virtual coils keep every bit of the data.
    c, h, w = 8, 12, 10
    base = coils.birdcage(3, h, w, dtype=torch.complex128)
    mix = _complex((c, 3), 3)
    maps = torch.einsum("cv,bvhw->bchw", mix, base)
    mask = masks.equispaced(w, 2, 0.3, offset=0)[None]
    x = _complex((1, 1, h, w), 4)
    k = MultiCoilMRI(mask, maps)(x)
    kc, a = coils.coil_compress(k, 3)
    torch.testing.assert_close(kc.abs().square().sum(), k.abs().square().sum())
    # Compressed k-space is the SENSE measurement with compressed maps A·S.
    maps_c = torch.einsum("bvc,bchw->bvhw", a, maps)
    torch.testing.assert_close(kc, MultiCoilMRI(mask, maps_c)(x), rtol=1e-10, atol=1e-10)
    # Calibrating on the centre block finds the same 3-D coil subspace.
    kc_calib, a_calib = coils.coil_compress(k, 3, calib=6)
    torch.testing.assert_close(kc_calib.abs().square().sum(), k.abs().square().sum())


def test_coil_compression_bad_input():
    k = torch.zeros(1, 4, 8, 8, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"\[1, 4\]"):
        coils.coil_compress(k, 5)
    with pytest.raises(ValueError, match="calib"):
        coils.coil_compress(k, 2, calib=9)
    with pytest.raises(ValueError, match="complex"):
        coils.coil_compress(torch.zeros(1, 4, 8, 8), 2)
