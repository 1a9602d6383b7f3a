"""Coil sensitivities and coil-domain tools: ESPIRiT, birdcage simulation, RSS, compression.

Layout: multi-coil k-space and images are ``[B, coils, H, W]`` complex (centred, :func:`physics.fft2c`
convention); maps are ``[B or 1, coils, H, W]`` complex, the layout :class:`physics.MultiCoilMRI` takes.
All functions take and return torch tensors on the input's device; :func:`birdcage` computes with
sigpy (NumPy) on the CPU and moves the result back.
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


def _center_block(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The central ``rows × cols`` block of the last two axes (the DC sample at ``H//2, W//2`` stays central)."""
    h, w = x.shape[-2:]
    r0, c0 = h // 2 - rows // 2, w // 2 - cols // 2
    return x[..., r0 : r0 + rows, c0 : c0 + cols]


def _calib_shape(calib_width: int | tuple[int, int], h: int, w: int, kernel_width: int) -> tuple[int, int]:
    rows, cols = (calib_width, calib_width) if isinstance(calib_width, (int, np.integer)) else tuple(calib_width)
    if not (1 <= kernel_width < min(rows, cols) and rows <= h and cols <= w):
        raise ValueError(
            f"espirit: expected 1 <= kernel_width < calibration rows, cols and calibration (rows, cols) <= (H, W) = "
            f"({h}, {w}), received kernel_width={kernel_width}, calib_width={calib_width!r}"
        )
    return int(rows), int(cols)


def espirit(
    kspace: torch.Tensor,
    calib_width: int | tuple[int, int] = 24,
    thresh: float = 0.02,
    crop: float = 0.95,
    kernel_width: int = 6,
    return_eigenvalues: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT sensitivity maps (one set), computed in torch on the input's device.

    Per slice: the calibration matrix of all ``kernel_width²`` k-space blocks of the central
    calibration region (rows: blocks, columns: coil-major kernel samples) is decomposed, ``A = UΣVᴴ``;
    the rows of ``Vᴴ`` with ``σ > thresh·σ_max`` span the signal subspace (Uecker et al. 2014, §Theory,
    the "k-space null-space" step). Zero-padded to ``H × W`` and inverse-Fourier transformed, these
    kernels give per pixel the coil matrix ``G(r) = Σ_k v_k(r) v_k(r)ᴴ · HW/kernel_width²`` (their
    eq. 13); its leading eigenvector is the map, its eigenvalue ≈ 1 inside the object. The numerics
    follow ``sigpy.mri.app.EspiritCalib`` (same normalisation, phase reference and crop; agreement on
    the support is tested) with three differences: the calibration region may be a rectangle, ``G``
    comes from the kernels' cross-correlations (one inverse DFT of ``C²`` images instead of one per
    kernel and coil), and the per-pixel eigenvector comes from an exact Hermitian eigendecomposition
    instead of 100 power iterations. Slices are processed one at a time in the input's precision.

    Args:
        kspace: centred k-space ``[B, coils, H, W]`` complex (undersampled is fine as long as the
            central calibration region is fully sampled).
        calib_width: side of the square calibration (ACS) region, or its ``(rows, cols)``. With
            column (phase-encode) undersampling the fully sampled region is every row of the central
            columns: a rectangle such as ``(24, n_acs)`` uses more of it than ``n_acs × n_acs``, as
            BART's ``ecalib`` does with its automatically detected calibration region.
        thresh: singular values below ``thresh · σ_max`` are discarded.
        crop: maps are zeroed where the eigenvalue is ≤ ``crop`` (outside the object). The zeros
            make the maps a support constraint: :attr:`physics.MultiCoilMRI.support`.
        kernel_width: side of the k-space kernel.
        return_eigenvalues: also return the eigenvalue map ``[B, H, W]`` (real).

    Returns:
        maps ``[B, coils, H, W]`` with the input's complex dtype and device. Inside the support each
        pixel's coil vector has unit norm (``Σ_c |S_c|² = 1``) and the phase of coil 0 is removed
        (sigpy's convention); maps are defined up to that per-pixel phase.

    Reference: M. Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating parallel MRI:
    where SENSE meets GRAPPA", Magn. Reson. Med. 71:990–1001 (2014).
    """
    _check_kspace(kspace, "espirit")
    b, c, h, w = kspace.shape
    rows, cols = _calib_shape(calib_width, h, w, kernel_width)
    if not 0 < thresh < 1:
        raise ValueError(f"espirit: expected 0 < thresh < 1, received thresh={thresh}")
    out = [_espirit_slice(kspace[i].detach(), rows, cols, kernel_width, thresh) for i in range(b)]  # bounded memory
    maps = torch.stack([o[0] for o in out])
    eig = torch.stack([o[1] for o in out])
    maps = maps * (eig > crop)[:, None]
    return (maps, eig) if return_eigenvalues else maps


def _espirit_slice(kspace: torch.Tensor, rows: int, cols: int, kw: int, thresh: float,
                   pixel_chunk: int = 1 << 15) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncropped ESPIRiT maps ``[C, H, W]`` and eigenvalues ``[H, W]`` of one slice ``[C, H, W]``, computed in
    the input's precision; the per-pixel coil matrices take ``H·W·C²`` elements, the eigendecompositions
    run over ``pixel_chunk`` pixels at a time."""
    c, h, w = kspace.shape
    calib = _center_block(kspace, rows, cols)
    # Blocks as rows: unfold real and imaginary parts ([2C·kw², L], channel-major like sigpy's blocks).
    parts = torch.view_as_real(calib).permute(0, 3, 1, 2).reshape(1, 2 * c, rows, cols)
    blocks = torch.nn.functional.unfold(parts, (kw, kw)).reshape(c, 2, kw * kw, -1)
    mat = torch.complex(blocks[:, 0], blocks[:, 1]).permute(2, 0, 1).reshape(-1, c * kw * kw)
    _, sv, vh = torch.linalg.svd(mat, full_matrices=False)  # vh [r, C·kw²]
    kern = vh[sv > thresh * sv[0]].reshape(-1, c, kw, kw)  # signal-subspace kernels [r, C, kw, kw]
    # G(x) = Σ_k v_k(x) v_k(x)ᴴ·HW/kw², v_k(x) the zero-padded kernels' inverse DFT, depends only on the
    # kernels' cross-correlations Q_cc'[Δ] = Σ_k Σ_p v_kc[p + Δ]·conj(v_kc'[p]), |Δ| < kw: compute those
    # on a (2kw − 1)² grid, place lag Δ at (Δ mod H, Δ mod W) (the uncentred DFT layout; lags beyond
    # the image wrap, as zero-padding to H × W and a DFT would give), and one inverse DFT of C² images
    # (not r·C of them) gives G.
    m = 2 * kw - 1
    spec = torch.fft.fft2(kern, s=(m, m))  # [r, C, m, m]
    lags = torch.fft.ifft2(torch.einsum("rcuv,rduv->cduv", spec, spec.conj()))  # lag Δ at index Δ mod m
    shift = torch.arange(m, device=kspace.device)
    delta = torch.where(shift < kw, shift, shift - m)  # the lag held at each index
    folded = torch.zeros(c, c, h, m, dtype=kspace.dtype, device=kspace.device).index_add_(2, delta % h, lags)
    grid = torch.zeros(c, c, h, w, dtype=kspace.dtype, device=kspace.device).index_add_(3, delta % w, folded)
    del folded, lags
    gram = torch.fft.ifft2(grid, norm="forward").mul_(1.0 / (kw * kw))  # [C, C, H, W], DC pixel at (0, 0)
    del grid
    gram = gram.reshape(c, c, h * w)
    vecs = torch.empty(c, h * w, dtype=kspace.dtype, device=kspace.device)
    vals = torch.empty(h * w, dtype=kspace.real.dtype, device=kspace.device)
    for i in range(0, h * w, pixel_chunk):
        e, v = torch.linalg.eigh(gram[:, :, i : i + pixel_chunk].permute(2, 0, 1))  # ascending; G is Hermitian
        vals[i : i + pixel_chunk] = e[:, -1]
        vecs[:, i : i + pixel_chunk] = v[:, :, -1].T
    ref = vecs[:1]
    vecs = vecs * (ref.conj() / ref.abs().clamp_min(torch.finfo(vals.dtype).tiny))
    centred = lambda t: torch.fft.fftshift(t.reshape(*t.shape[:-1], h, w), dim=(-2, -1))  # noqa: E731
    return centred(vecs), centred(vals)


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
        data = _center_block(kspace, calib, calib)
    x = data.reshape(b, c, -1).to(torch.complex128)
    # Left singular vectors of X are the eigenvectors of the coil covariance X Xᴴ (coils × coils).
    _, vecs = torch.linalg.eigh(x @ x.mH)  # ascending eigenvalues
    a = vecs.flip(-1)[..., :n_virtual].mH.to(kspace.dtype)  # [B, n_virtual, coils]
    compressed = (a @ kspace.reshape(b, c, -1)).reshape(b, n_virtual, h, w)
    return compressed, a
