"""Cartesian MRI operators: agreement with sigpy's ``Sense`` linop, the normal fast path, the SVD,
per-item state, precision handling and bad input.

The shared checks (adjointness, autograd, batching, norms, CG) run on the cases in ``cases_mri.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import sigpy
import sigpy.mri
import torch

from physics import MultiCoilMRI, SingleCoilMRI, coils, fft2c, ifft2c, masks


def _complex(shape, seed: int = 0, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    re, im = torch.randn((2, *shape), dtype=torch.float64, generator=g)
    return torch.complex(re, im).to(dtype)


def _sense(maps: np.ndarray, weights=None):
    return sigpy.mri.linop.Sense(maps, weights=weights)


# -- agreement with sigpy ------------------------------------------------------------------------
def test_public_names_import():
    import physics

    assert physics.SingleCoilMRI is SingleCoilMRI and physics.MultiCoilMRI is MultiCoilMRI
    assert physics.masks is masks and physics.coils is coils


def test_single_coil_equals_sigpy_sense_with_unit_map():
    h, w = 12, 9
    mask = masks.equispaced_fraction(w, 3, 0.25, seed=0)
    x = _complex((1, 1, h, w))
    op = SingleCoilMRI(mask[None], shape=(h, w))
    A = _sense(np.ones((1, h, w), dtype=np.complex128), weights=mask.numpy().astype(np.float64))
    np.testing.assert_allclose(op(x)[0].numpy(), A(x[0, 0].numpy()), rtol=0, atol=1e-12)
    y = _complex((1, 1, h, w), 1)
    np.testing.assert_allclose(op.adjoint(y)[0, 0].numpy(), A.H(y[0].numpy()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("mask_kind", ["column", "2d"])
def test_multi_coil_equals_sigpy_sense(mask_kind):
    c, h, w = 4, 10, 14
    maps = coils.birdcage(c, h, w, dtype=torch.complex128)
    if mask_kind == "column":
        mask = masks.random(w, 2, 0.2, seed=3)  # [W]
    else:
        mask = masks.poisson_disc((h, w), 2, calib=(4, 4), seed=1)  # [H, W]
    op = MultiCoilMRI(mask[None], maps)
    A = _sense(maps[0].numpy(), weights=mask.numpy().astype(np.float64))
    x, y = _complex((1, 1, h, w), 2), _complex((1, c, h, w), 3)
    np.testing.assert_allclose(op(x)[0].numpy(), A(x[0, 0].numpy()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(op.adjoint(y)[0, 0].numpy(), A.H(y[0].numpy()), rtol=0, atol=1e-12)


def test_sigpy_weights_enter_as_square_root():
    # Our mask multiplies k-space once (A = M F S); sigpy's Sense applies sqrt(weights). So
    # MultiCoilMRI(m, S) == Sense(S, weights=m²), and != Sense(S, weights=m) for non-binary m.
    c, h, w = 3, 8, 6
    maps = coils.birdcage(c, h, w, dtype=torch.complex128)
    m = torch.linspace(0.1, 1.0, w, dtype=torch.float64)
    op = MultiCoilMRI(m[None], maps)
    x = _complex((1, 1, h, w), 4)
    ours = op(x)[0].numpy()
    np.testing.assert_allclose(ours, _sense(maps[0].numpy(), weights=m.numpy() ** 2)(x[0, 0].numpy()), rtol=0, atol=1e-12)
    assert not np.allclose(ours, _sense(maps[0].numpy(), weights=m.numpy())(x[0, 0].numpy()), atol=1e-3)


# -- the model ------------------------------------------------------------------------------------
def test_forward_is_mask_times_fft_of_coil_images():
    c, h, w = 3, 6, 8
    maps = _complex((2, c, h, w), 5)
    mask = torch.rand((2, h, w), generator=torch.Generator().manual_seed(0)) < 0.5
    x = _complex((2, 1, h, w), 6)
    k = MultiCoilMRI(mask, maps)(x)
    torch.testing.assert_close(k, mask[:, None] * fft2c(maps * x), rtol=0, atol=1e-12)
    assert bool((k[~mask[:, None].expand_as(k)] == 0).all())


def test_per_item_masks_act_on_their_own_item():
    h, w = 6, 8
    mask = torch.stack([masks.equispaced(w, 2, 0.25, offset=o) for o in (0, 1, 0)])  # [3, W]
    mask[2] = masks.equispaced(w, 4, 0.0, offset=3)
    op = SingleCoilMRI(mask, shape=(h, w))
    assert op.batch == 3
    x = _complex((3, 1, h, w), 7)
    k = op(x)
    for i in range(3):
        torch.testing.assert_close(k[i : i + 1], SingleCoilMRI(mask[i], shape=(h, w))(x[i : i + 1]))


@pytest.mark.parametrize("real_dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("mask_kind", ["column", "2d"])
@pytest.mark.parametrize("coils_", [None, 3])
def test_normal_fast_path_equals_adjoint_of_forward(real_dtype, mask_kind, coils_):
    h, w = 9, 12
    cd = torch.complex64 if real_dtype == torch.float32 else torch.complex128
    g = torch.Generator().manual_seed(8)
    if mask_kind == "column":
        mask = torch.rand((2, w), generator=g, dtype=real_dtype)  # weights, per item
    else:
        mask = torch.rand((2, h, w), generator=g, dtype=real_dtype)
    op = SingleCoilMRI(mask, shape=(h, w)) if coils_ is None else MultiCoilMRI(mask, _complex((2, coils_, h, w), 9, cd))
    x = _complex((2, 1, h, w), 10, cd)
    tol = 1e-5 if real_dtype == torch.float32 else 1e-12
    torch.testing.assert_close(op.normal(x), op.adjoint(op(x)), rtol=tol, atol=tol)


def test_full_sampling_with_unit_maps_is_an_isometry():
    maps = coils.birdcage(6, 10, 7, dtype=torch.complex128)
    op = MultiCoilMRI(torch.ones(1, 7), maps)
    x = _complex((2, 1, 10, 7), 11)
    torch.testing.assert_close(op.normal(x), x, rtol=0, atol=1e-12)  # AᴴA = I since Σ|S|² = 1
    torch.testing.assert_close(op(x).norm(), x.norm())


def test_state_follows_the_input_precision():
    # complex64 state used on complex128 input runs in double precision (cached per dtype/device).
    h, w = 8, 8
    maps = coils.birdcage(4, h, w, dtype=torch.complex64)
    op = MultiCoilMRI(masks.random(w, 2, 0.25, seed=0)[None], maps)
    x = _complex((1, 1, h, w), 12)
    k = op(x)
    assert k.dtype == torch.complex128 and op.adjoint(k).dtype == torch.complex128
    assert op(x.to(torch.complex64)).dtype == torch.complex64
    assert op.check_adjoint(dtype=torch.float64, generator=torch.Generator().manual_seed(0)) < 1e-13
    assert op.maps is maps and op.mask.shape == (1, 1, 1, w)


def test_autograd_data_consistency_gradient():
    # The DPS-style gradient ∇ₓ ½‖Ax − y‖² = Aᴴ(Ax − y), through the operator's custom backward.
    op = MultiCoilMRI(masks.equispaced(8, 2, 0.25, offset=1)[None], coils.birdcage(3, 6, 8, dtype=torch.complex128))
    x = _complex((1, 1, 6, 8), 13).requires_grad_(True)
    y = _complex((1, 3, 6, 8), 14)
    (grad,) = torch.autograd.grad(0.5 * (op(x) - y).abs().square().sum(), x)
    torch.testing.assert_close(grad, op.adjoint(op(x.detach()) - y))


# -- the SVD of the single-coil operator ----------------------------------------------------------
@pytest.mark.parametrize("mask_kind", ["column", "2d"])
def test_single_coil_svd_reconstructs_the_operator(mask_kind):
    h, w = 7, 10
    g = torch.Generator().manual_seed(15)
    mask = torch.rand((2, w), generator=g) < 0.5 if mask_kind == "column" else torch.rand((2, h, w), generator=g) < 0.5
    op = SingleCoilMRI(mask, shape=(h, w))
    svd = op.svd(like=torch.zeros(1, dtype=torch.complex128))
    s = svd.singular_values
    assert s.dtype == torch.float64 and bool((s >= 0).all())
    torch.testing.assert_close(s, op.mask.to(torch.float64))
    x, y = _complex((2, 1, h, w), 16), _complex((2, 1, h, w), 17)
    torch.testing.assert_close(svd.U(s * svd.Vh(x)), op(x), rtol=0, atol=1e-12)  # A = U Σ Vᴴ
    torch.testing.assert_close(svd.V(s * svd.Uh(y)), op.adjoint(y), rtol=0, atol=1e-12)  # Aᴴ = V Σ Uᴴ
    torch.testing.assert_close(svd.V(svd.Vh(x)), x, rtol=0, atol=1e-12)  # V unitary
    torch.testing.assert_close(svd.Vh(x), fft2c(x))
    torch.testing.assert_close(svd.V(y), ifft2c(y))


def test_svd_pseudo_inverse_equals_least_squares_and_weights():
    h, w = 6, 9
    weights = torch.tensor([[0.0, 0.5, 1.0, 2.0, 0.0, 1.0, 0.25, 0.0, 1.0]], dtype=torch.float64)
    op = SingleCoilMRI(weights, shape=(h, w))
    y = op(_complex((1, 1, h, w), 18))
    x_svd = op.svd().pinv(y)
    x_cg = op.pinv(y, tol=1e-13, max_iter=200)
    torch.testing.assert_close(x_svd, x_cg, rtol=1e-9, atol=1e-9)
    # Minimum norm: no energy in the null space (the unsampled columns).
    assert float(fft2c(x_svd)[..., weights[0] == 0].abs().max()) < 1e-12


# -- bad input --------------------------------------------------------------------------------------
def test_mask_width_mismatch_names_both_shapes():
    maps = torch.zeros(1, 4, 8, 10, dtype=torch.complex64)
    with pytest.raises(ValueError, match=r"10\].*\(1, 9\)"):
        MultiCoilMRI(torch.ones(1, 9), maps)
    with pytest.raises(ValueError, match=r"\[B or 1, 8, 10\].*\(1, 7, 10\)"):
        MultiCoilMRI(torch.ones(1, 7, 10), maps)
    with pytest.raises(ValueError, match=r"\(1, 11\)"):
        SingleCoilMRI(torch.ones(1, 11), shape=(8, 10))


def test_kspace_width_mismatch_in_adjoint():
    op = SingleCoilMRI(torch.ones(1, 10), shape=(8, 10))
    with pytest.raises(ValueError, match=r"1, 8, 10.*\(1, 1, 8, 11\)"):
        op.adjoint(torch.zeros(1, 1, 8, 11, dtype=torch.complex64))


def test_bad_maps():
    mask = torch.ones(1, 10)
    with pytest.raises(ValueError, match=r"\[B or 1, coils, H, W\].*\(4, 8, 10\)"):
        MultiCoilMRI(mask, torch.zeros(4, 8, 10, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"complex.*float32"):
        MultiCoilMRI(mask, torch.zeros(1, 4, 8, 10))
    with pytest.raises(ValueError, match="batch"):
        MultiCoilMRI(torch.ones(3, 10), torch.zeros(2, 4, 8, 10, dtype=torch.complex64))


def test_bad_masks():
    with pytest.raises(ValueError, match="shape=\\(H, 10\\)"):
        SingleCoilMRI(torch.ones(1, 10))  # a column mask does not fix H
    with pytest.raises(ValueError, match="real mask"):
        SingleCoilMRI(torch.ones(1, 4, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match="non-negative"):
        SingleCoilMRI(-torch.ones(1, 4, 4))
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 4\)"):
        SingleCoilMRI(torch.ones(1, 1, 4, 4))


def test_wrong_input_batch_and_dtype():
    op = SingleCoilMRI(torch.ones(3, 5, 5))
    with pytest.raises(ValueError, match="batch of 3"):
        op(torch.zeros(2, 1, 5, 5, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex"):
        op(torch.zeros(3, 1, 5, 5))
