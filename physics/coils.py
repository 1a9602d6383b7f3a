"""Coil sensitivities and coil-domain tools: ESPIRiT (via sigpy), birdcage simulation, RSS, compression.

Layout: multi-coil k-space and images are ``[B, coils, H, W]`` complex (centred, :func:`physics.fft2c`
convention); maps are ``[B or 1, coils, H, W]`` complex, the layout :class:`physics.MultiCoilMRI` takes.
All functions take and return torch tensors on the input's device; the sigpy-backed ones
(:func:`espirit`, :func:`birdcage`) compute with NumPy on the CPU and move the result back.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["espirit", "birdcage", "rss", "coil_compress"]


def _check_kspace(kspace: torch.Tensor, name: str) -> None:
    if not isinstance(kspace, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, received {type(kspace).__name__}")
    if kspace.ndim != 4:
        raise ValueError(f"{name}: expected k-space of shape [B, coils, H, W], received {tuple(kspace.shape)}")
    if not kspace.is_complex():
        raise ValueError(f"{name}: expected complex k-space (complex64/complex128), received {kspace.dtype}")


def espirit(
    kspace: torch.Tensor,
    calib_width: int = 24,
    thresh: float = 0.02,
    crop: float = 0.95,
    kernel_width: int = 6,
    max_iter: int = 100,
) -> torch.Tensor:
    """ESPIRiT sensitivity maps, one slice at a time, through ``sigpy.mri.app.EspiritCalib``.

    Args:
        kspace: centred k-space ``[B, coils, H, W]`` complex (undersampled is fine as long as the
            central ``calib_width × calib_width`` block is fully sampled).
        calib_width: side of the square calibration (ACS) block taken from the k-space centre.
        thresh: singular values of the calibration matrix below ``thresh · σ_max`` are discarded.
        crop: maps are zeroed where the largest eigenvalue of the image-domain kernel is ≤ ``crop``
            (outside the object support).
        kernel_width: side of the k-space kernel.
        max_iter: power iterations for the per-pixel eigenvector.

    Returns:
        maps ``[B, coils, H, W]`` with the input's complex dtype (complex64 for complex64 input) and
        device. Inside the support each pixel's coil vector has unit norm (``Σ_c |S_c|² = 1``) and
        the phase of coil 0 is removed (sigpy's convention); maps are defined up to that per-pixel
        phase. Computed on the CPU with NumPy.

    Reference: M. Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating parallel MRI:
    where SENSE meets GRAPPA", Magn. Reson. Med. 71:990–1001 (2014).
    """
    from sigpy.mri.app import EspiritCalib

    _check_kspace(kspace, "espirit")
    h, w = kspace.shape[-2:]
    if not 1 <= kernel_width < calib_width <= min(h, w):
        raise ValueError(
            f"espirit: expected 1 <= kernel_width < calib_width <= min(H, W) = {min(h, w)} for k-space "
            f"{tuple(kspace.shape)}, received kernel_width={kernel_width}, calib_width={calib_width}"
        )
    ksp = kspace.detach().cpu().numpy()
    maps = np.stack(
        [
            EspiritCalib(
                ksp[b], calib_width=calib_width, thresh=thresh, kernel_width=kernel_width, crop=crop,
                max_iter=max_iter, show_pbar=False,
            ).run()
            for b in range(ksp.shape[0])
        ]
    )
    return torch.from_numpy(np.ascontiguousarray(maps)).to(device=kspace.device, dtype=kspace.dtype)


def birdcage(
    coils: int,
    H: int,
    W: int,
    r: float = 1.5,
    *,
    dtype: torch.dtype = torch.complex64,
    device: Optional[torch.device | str] = None,
) -> torch.Tensor:
    """Simulated birdcage-coil sensitivities ``[1, coils, H, W]`` through ``sigpy.mri.birdcage_maps``.

    Coil ``c`` sits at radius ``r`` (relative to the half field of view) at angle ``2πc/coils``; its
    magnitude falls as ``1/distance`` and its phase turns with the angle. The maps are **normalised
    so that Σ_c |S_c|² = 1 at every pixel** (sigpy divides by their root-sum-of-squares), which makes
    ``‖MultiCoilMRI(mask, maps)‖ = 1`` for a binary mask.
    """
    import sigpy.mri

    if not all(isinstance(n, (int, np.integer)) and n >= 1 for n in (coils, H, W)):
        raise ValueError(f"birdcage: coils, H, W must be positive ints, received {(coils, H, W)}")
    if not r > 1:
        raise ValueError(f"birdcage: the coil radius r must exceed 1 (outside the field of view), received {r}")
    if dtype not in (torch.complex64, torch.complex128):
        raise ValueError(f"birdcage: dtype must be torch.complex64 or torch.complex128, received {dtype}")
    maps = sigpy.mri.birdcage_maps((int(coils), int(H), int(W)), r=float(r), dtype=np.complex128)
    return torch.from_numpy(maps)[None].to(device=device, dtype=dtype)


def rss(x: torch.Tensor, dim: int = 1, keepdim: bool = False) -> torch.Tensor:
    """Root-sum-of-squares ``sqrt(Σ_dim |x|²)`` (real, the fastMRI coil combination).

    For coil images ``[B, coils, H, W]`` the default ``dim=1`` gives ``[B, H, W]`` (``keepdim=True``:
    ``[B, 1, H, W]``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"rss: expected a torch.Tensor, received {type(x).__name__}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"rss: dim {dim} is out of range for a tensor of shape {tuple(x.shape)}")
    return x.abs().square().sum(dim=dim, keepdim=keepdim).sqrt()


def coil_compress(
    kspace: torch.Tensor, n_virtual: int, calib: Optional[int] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD (PCA) coil compression, per slice: ``k_v = A k`` with ``A`` the top left singular vectors.

    For each slice the data matrix ``X = kspace[b].reshape(coils, H·W)`` (or its central
    ``calib × calib`` block) is decomposed as ``X = U Σ Vᴴ``; the compression matrix is
    ``A = U[:, :n_virtual]ᴴ`` (orthonormal rows), and the virtual coils keep the fraction
    ``Σ_{i<n} σ_i² / Σ_i σ_i²`` of the energy, the largest possible for ``n`` coils.

    Because ``A`` mixes coils per pixel it commutes with the FFT and the mask: compressed k-space
    is exactly the measurement of :class:`physics.MultiCoilMRI` with maps ``A S``.

    Returns:
        ``(compressed [B, n_virtual, H, W], A [B, n_virtual, coils])``, both in the input's dtype and
        device.

    Reference: M. Buehrer et al., "Array compression for MRI with large coil arrays",
    Magn. Reson. Med. 57:1131–1139 (2007); F. Huang et al., "A software channel compression technique
    for faster reconstruction with many channels", Magn. Reson. Imaging 26:133–141 (2008).
    """
    _check_kspace(kspace, "coil_compress")
    b, c, h, w = kspace.shape
    if isinstance(n_virtual, bool) or not isinstance(n_virtual, (int, np.integer)) or not 1 <= n_virtual <= c:
        raise ValueError(
            f"coil_compress: n_virtual must be an int in [1, {c}] for k-space {tuple(kspace.shape)}, "
            f"received {n_virtual!r}"
        )
    data = kspace
    if calib is not None:
        if not 1 <= calib <= min(h, w):
            raise ValueError(f"coil_compress: calib must lie in [1, {min(h, w)}], received {calib!r}")
        r0, c0 = h // 2 - calib // 2, w // 2 - calib // 2
        data = kspace[..., r0 : r0 + calib, c0 : c0 + calib]
    x = data.reshape(b, c, -1).to(torch.complex128)
    # Left singular vectors of X are the eigenvectors of the coil covariance X Xᴴ (coils × coils).
    _, vecs = torch.linalg.eigh(x @ x.mH)  # ascending eigenvalues
    a = vecs.flip(-1)[..., :n_virtual].mH.to(kspace.dtype)  # [B, n_virtual, coils]
    compressed = (a @ kspace.reshape(b, c, -1)).reshape(b, n_virtual, h, w)
    return compressed, a
