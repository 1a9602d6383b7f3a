"""``fft2c`` / ``ifft2c`` against the NumPy shifted orthonormal FFT and ``sigpy.fft`` (DESIGN.md, Fourier)."""
from __future__ import annotations

import numpy as np
import pytest
import sigpy
import torch

from physics import fft2c, ifft2c

SHAPES = [(8, 8), (7, 9), (6, 5), (1, 4, 3), (2, 3, 10, 11)]


def _numpy_fft2c(a: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _numpy_ifft2c(a: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a, axes=axes), axes=axes, norm="ortho"), axes=axes)


def _complex(shape, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, dtype=torch.float64, generator=g), torch.randn(shape, dtype=torch.float64, generator=g))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fft2c_matches_numpy_shifted_ortho_fft(shape):
    x = _complex(shape)
    np.testing.assert_allclose(fft2c(x).numpy(), _numpy_fft2c(x.numpy()), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft2c(x).numpy(), _numpy_ifft2c(x.numpy()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_fft2c_matches_sigpy(shape):
    x = _complex(shape, 1)
    np.testing.assert_allclose(fft2c(x).numpy(), sigpy.fft(x.numpy(), axes=(-2, -1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft2c(x).numpy(), sigpy.ifft(x.numpy(), axes=(-2, -1)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 9), (8, 6)], ids=str)
def test_dc_sits_at_the_centre_pixel(shape):
    # The centred convention puts k = 0 at index (H // 2, W // 2) for odd and even sizes alike.
    x = torch.ones(shape, dtype=torch.complex128)
    k = fft2c(x)
    h, w = shape
    expected = torch.zeros(shape, dtype=torch.complex128)
    expected[h // 2, w // 2] = (h * w) ** 0.5  # orthonormal: DC of ones = sqrt(N)
    torch.testing.assert_close(k, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(7, 9), (8, 8)], ids=str)
def test_unitary_inverse_and_adjoint(shape):
    x, y = _complex((3, *shape), 2), _complex((3, *shape), 3)
    torch.testing.assert_close(ifft2c(fft2c(x)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(fft2c(x).norm(), x.norm(), rtol=1e-13, atol=0)  # Parseval, ‖F‖ = 1
    lhs = torch.vdot(fft2c(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), ifft2c(y).flatten())
    assert abs(lhs - rhs) < 1e-12 * x.norm() * y.norm()


def test_complex64_precision_and_dtype():
    x = _complex((2, 9, 8), 4)
    k32 = fft2c(x.to(torch.complex64))
    assert k32.dtype == torch.complex64
    torch.testing.assert_close(k32, fft2c(x).to(torch.complex64), rtol=1e-5, atol=1e-5)


def test_real_input_is_promoted():
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    k = fft2c(x)
    assert k.dtype == torch.complex128
    np.testing.assert_allclose(k.numpy(), _numpy_fft2c(x.numpy()), rtol=0, atol=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(5,\)"):
        fft2c(torch.zeros(5, dtype=torch.complex64))
    with pytest.raises(TypeError):
        ifft2c(np.zeros((4, 4)))
