"""Image-quality metrics with the fastMRI definitions (``fastmri/evaluate.py``; Zbontar et al. 2018).

All functions are pure ``(target, pred, *, data_range=None)`` on magnitude volumes ``[S, H, W]``
(a 2-D ``[H, W]`` image counts as one slice), numpy arrays or torch tensors (converted to float64
numpy). The data range defaults to the **volume** maximum of the target, ``target.max()``, as in
fastMRI (not max − min, and not per slice):

* ``nmse = ‖target − pred‖² / ‖target‖²`` over the whole volume;
* ``psnr = 10·log10(data_range² / mean((target − pred)²))`` over the whole volume (skimage's
  ``peak_signal_noise_ratio`` with ``data_range``);
* ``ssim`` = mean over slices of skimage's ``structural_similarity(target[s], pred[s],
  data_range=data_range)`` with its defaults: a 7×7 uniform window, K1 = 0.01, K2 = 0.03, sample
  covariance — the fastMRI evaluation.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from medrecon import MedreconError

__all__ = ["nmse", "psnr", "ssim", "METRICS", "evaluate"]


def _pair(target: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for v in (target, pred))
    if np.iscomplexobj(t) or np.iscomplexobj(p):
        raise MedreconError(f"metrics take magnitude images; received dtypes {t.dtype} and {p.dtype} (use abs())")
    if t.shape != p.shape:
        raise MedreconError(f"metrics: target shape {t.shape} and prediction shape {p.shape} differ")
    if t.ndim == 2:
        t, p = t[None], p[None]
    if t.ndim != 3:
        raise MedreconError(f"metrics expect [slices, H, W] or [H, W], received shape {t.shape}")
    return t.astype(np.float64), p.astype(np.float64)


def _range(t: np.ndarray, data_range: Optional[float]) -> float:
    r = float(t.max()) if data_range is None else float(data_range)
    if not r > 0:
        raise MedreconError(f"metrics: data range must be positive, received {r} (target max {float(t.max())})")
    return r


def nmse(target: Any, pred: Any, *, data_range: Optional[float] = None) -> float:
    """Normalised MSE ``‖t − p‖² / ‖t‖²`` over the volume (``data_range`` is accepted and unused)."""
    t, p = _pair(target, pred)
    return float(np.sum((t - p) ** 2) / np.sum(t**2))


def psnr(target: Any, pred: Any, *, data_range: Optional[float] = None) -> float:
    """PSNR in dB, ``10 log10(R² / MSE)`` over the volume, ``R = target.max()`` unless given (∞ for identical)."""
    t, p = _pair(target, pred)
    r = _range(t, data_range)
    mse = float(np.mean((t - p) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(r**2 / mse))


def ssim(target: Any, pred: Any, *, data_range: Optional[float] = None) -> float:
    """Mean over slices of skimage SSIM (7×7 window) with ``data_range`` = the target volume max unless given."""
    from skimage.metrics import structural_similarity

    t, p = _pair(target, pred)
    r = _range(t, data_range)
    if min(t.shape[1:]) < 7:
        raise MedreconError(f"ssim needs slices of at least 7x7 pixels (the window), received {t.shape[1:]}")
    return float(np.mean([structural_similarity(t[s], p[s], data_range=r) for s in range(t.shape[0])]))


METRICS: dict[str, Callable[..., float]] = {"nmse": nmse, "psnr": psnr, "ssim": ssim}


def evaluate(target: Any, pred: Any, *, data_range: Optional[float] = None) -> dict[str, float]:
    """All of :data:`METRICS` on one volume: ``{"nmse": …, "psnr": …, "ssim": …}``."""
    return {name: fn(target, pred, data_range=data_range) for name, fn in METRICS.items()}
