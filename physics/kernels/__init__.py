"""Triton kernels for the data-consistency operators, each with the torch reference it must match.

Modules
-------
``physics.kernels.mri_dc``
    Fused multi-coil SENSE expand / combine, the masked k-space blend of Song et al. (ICLR 2022) and
    FFT centring by the checkerboard sign trick; one DC step = 3 kernels + 2 FFTs.
``physics.kernels.ct_project``
    Parallel- and fan-beam forward projection and its exact transpose (gather, no atomics) with the
    discretisation of :mod:`physics.ct`.
``physics.kernels.ct_numba``
    The same Joseph pair and the FBP back-projection as compiled CPU kernels (numba, float32 and
    float64), used by :class:`physics.ct.Radon` for CPU tensors (:func:`use_numba`).

Dispatch
--------
Every public kernel function takes ``backend="auto" | "triton" | "torch"``. ``"auto"`` picks Triton
when :func:`use_triton` says so (a CUDA tensor and an importable ``triton``) and the torch
reference otherwise, so CPU code never needs Triton. ``"triton"`` forces the kernel: on CPU tensors
this works only when ``TRITON_INTERPRET=1`` was set before the kernel module was imported (the
Triton interpreter; used by the tests). Inside :func:`interpreted` the ``"auto"`` choice also picks
the kernels for CPU tensors, so operators wired to these kernels (``physics.ct.Radon``,
``physics.mri.MultiCoilMRI``) can be tested end to end on the CPU; inside :func:`torch_only` it
always picks the torch reference (also for CUDA tensors).

On the CPU, :func:`use_numba` is the rule of :class:`physics.ct.Radon`: its numba kernels run for CPU
tensors whenever ``numba`` imports, except inside :func:`torch_only` (so the torch reference stays
selectable and testable) and where the Triton rule already applies.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from typing import Iterator, Literal

import torch

__all__ = [
    "Backend", "triton_available", "interpreter_active", "use_triton", "resolve_backend", "interpreted", "torch_only",
    "numba_available", "use_numba",
]

Backend = Literal["auto", "triton", "torch"]

_FORCE_CPU = False
_DISABLED = False


def triton_available() -> bool:
    """Whether ``triton`` can be imported (it is optional: ``pip install medrecon[gpu]``)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_active() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set (kernels then run in the CPU interpreter)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on")


def use_triton(t: torch.Tensor) -> bool:
    """The ``"auto"`` rule: Triton for CUDA tensors (or any tensor inside :func:`interpreted`)."""
    if _DISABLED or not triton_available():
        return False
    return t.is_cuda or (_FORCE_CPU and interpreter_active())


@functools.lru_cache(maxsize=None)
def numba_available() -> bool:
    """Whether ``numba`` imports (it ships with ``sigpy``; checked once, by importing it)."""
    try:
        importlib.import_module("numba")
    except Exception:  # noqa: BLE001 - a broken install (e.g. numpy mismatch) means "unavailable"
        return False
    return True


def use_numba(t: torch.Tensor) -> bool:
    """The CPU rule: numba kernels for a CPU tensor when numba imports, except inside :func:`torch_only`."""
    return not _DISABLED and t.device.type == "cpu" and numba_available()


def resolve_backend(backend: str, t: torch.Tensor) -> bool:
    """``True`` when ``backend`` selects the Triton kernel for tensor ``t``; validates the name."""
    if backend == "auto":
        return use_triton(t)
    if backend == "torch":
        return False
    if backend == "triton":
        if not triton_available():
            raise ValueError("backend='triton' requested but triton is not importable (pip install triton)")
        if not t.is_cuda and not interpreter_active():
            raise ValueError(
                f"backend='triton' on a {t.device.type} tensor needs TRITON_INTERPRET=1 (the Triton interpreter); "
                "use a CUDA tensor or backend='torch'"
            )
        return True
    raise ValueError(f"backend must be 'auto', 'triton' or 'torch', received {backend!r}")


@contextlib.contextmanager
def interpreted() -> Iterator[None]:
    """Within this block ``backend="auto"`` runs the Triton kernels on CPU tensors through the
    interpreter (only when ``TRITON_INTERPRET=1`` is active; otherwise it changes nothing)."""
    global _FORCE_CPU
    previous, _FORCE_CPU = _FORCE_CPU, True
    try:
        yield
    finally:
        _FORCE_CPU = previous


@contextlib.contextmanager
def torch_only() -> Iterator[None]:
    """Within this block ``backend="auto"`` always picks the torch reference (also on CUDA): the
    reference timings of ``benchmarks/gpu.py`` and the ``backend="torch"`` paths use it."""
    global _DISABLED
    previous, _DISABLED = _DISABLED, True
    try:
        yield
    finally:
        _DISABLED = previous
