"""The numba CPU kernels of ``physics.kernels.ct_numba`` against the torch reference of ``physics.ct``.

The reference is ``physics.ct.Radon`` evaluated inside ``physics.kernels.torch_only()`` (which forces
the pure-torch path); the kernels must reproduce it to rounding: relative max-norm error ≤ 1e-5 in
float32 and ≤ 1e-12 in float64, for the forward, the adjoint and the FBP back-projection, for every
geometry (parallel, fan equiangular, fan flat; shared and per-item angles; fine and coarse detector
pitch), plus the dot test ⟨Ax, y⟩ = ⟨x, Aᵀy⟩. Sizes are small (≤ 32², ≤ 12 views) so that the file runs
in seconds once the kernels are compiled (the first run compiles them, ~15 s on 2 cores, and caches
them on disk).
"""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("numba", reason="numba is not installed (it ships with sigpy)")

import physics.ct as ct  # noqa: E402
import physics.kernels as kernels  # noqa: E402
from physics.kernels import ct_numba  # noqa: E402
from physics.operator import inner  # noqa: E402

RTOL = {torch.float32: 1e-5, torch.float64: 1e-12}
DOT_TOL = {torch.float32: 1e-5, torch.float64: 1e-12}
VIEWS = 12


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """‖actual − expected‖_∞ ≤ rtol·‖expected‖_∞, same shape and dtype."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    err = float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


def _geometry(name: str):
    g = _gen(1)
    half = torch.linspace(0, math.pi, VIEWS + 1, dtype=torch.float64)[:-1]
    circle = torch.linspace(0, 2 * math.pi, VIEWS + 1, dtype=torch.float64)[:-1]
    if name == "parallel":
        return ct.ParallelBeam(32, half)
    if name == "parallel-per-item-fine-detector":  # odd N, own angles per item, 3 taps per view
        return ct.ParallelBeam(31, 7 * torch.rand(2, VIEWS, generator=g, dtype=torch.float64), detectors=40,
                               detector_spacing=0.7)
    if name == "parallel-wide-detector":  # 1 tap; axis-aligned views (b = 0 and b ≈ 6e-17 with |a| ≈ 600)
        angles = torch.tensor([0.0, math.pi / 4, math.pi / 2, math.pi, 3 * math.pi / 2, 2.0], dtype=torch.float64)
        return ct.ParallelBeam(16, angles, detectors=41, detector_spacing=30.0)
    if name == "fan-equiangular":
        return ct.FanBeam(32, circle, source_distance=60.0, detector_distance=40.0)
    if name == "fan-flat-per-item":
        return ct.FanBeam(32, circle[None] + torch.tensor([[0.0], [0.3]], dtype=torch.float64), source_distance=50.0,
                          detector_distance=20.0, detectors=50, detector_spacing=1.3, detector="flat")
    if name == "fan-equiangular-short-scan":  # π + fan angle: FBP uses Parker weights
        return ct.FanBeam(24, torch.linspace(0, 4.2, VIEWS, dtype=torch.float64), source_distance=40.0,
                          detector_distance=30.0)
    raise KeyError(name)


GEOMETRIES = ["parallel", "parallel-per-item-fine-detector", "parallel-wide-detector", "fan-equiangular",
              "fan-flat-per-item", "fan-equiangular-short-scan"]
DTYPES = [torch.float32, torch.float64]


def _data(geo, dtype, seed: int):
    g = _gen(seed)
    batch = geo.batch or 3  # shared angles: a batch of 3 shares the per-ray arithmetic
    n = geo.image_size
    x = torch.randn(batch, 1, n, n, generator=g, dtype=torch.float64).to(dtype)
    y = torch.randn(batch, 1, geo.views, geo.detectors, generator=g, dtype=torch.float64).to(dtype)
    return x, y


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", GEOMETRIES)
def test_numba_pair_matches_the_torch_reference_and_is_adjoint(name, dtype):
    geo = _geometry(name)
    x, y = _data(geo, dtype, seed=2)
    ax, aty = ct_numba.radon_forward(x, geo), ct_numba.radon_adjoint(y, geo)
    with kernels.torch_only():
        op = ct.Radon(geo)
        ref_ax, ref_aty = op(x), op.adjoint(y)
    assert_rel_close(ax, ref_ax, RTOL[dtype])
    assert_rel_close(aty, ref_aty, RTOL[dtype])
    lhs, rhs = inner(ax, y), inner(x, aty)
    scale = (inner(ax, ax) * inner(y, y)).sqrt()
    assert float(((lhs - rhs).abs() / scale).max()) < DOT_TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["parallel", "parallel-per-item-fine-detector", "fan-equiangular",
                                  "fan-flat-per-item", "fan-equiangular-short-scan"])
@pytest.mark.parametrize("filter", ["ramp", "hann"])
def test_numba_fbp_matches_the_torch_reference(name, dtype, filter):
    geo = _geometry(name)
    op = ct.Radon(geo)
    _, y = _data(geo, dtype, seed=3)
    rec = op.fbp(y, filter=filter)  # CPU: the back-projection runs in numba
    with kernels.torch_only():
        ref = op.fbp(y, filter=filter)
    assert_rel_close(rec, ref, RTOL[dtype])


def test_radon_on_cpu_dispatches_to_numba_and_torch_only_restores_the_reference(monkeypatch):
    geo = _geometry("parallel")
    op = ct.Radon(geo)
    x, y = _data(geo, torch.float32, seed=4)
    calls = []
    for fn in ("radon_forward", "radon_adjoint", "lerp_backproject"):
        original = getattr(ct_numba, fn)
        monkeypatch.setattr(ct_numba, fn, lambda *a, _f=original, _n=fn: calls.append(_n) or _f(*a))
    op(x), op.adjoint(y), op.fbp(y)
    assert calls == ["radon_forward", "radon_adjoint", "lerp_backproject"]
    calls.clear()
    with kernels.torch_only():
        op(x), op.adjoint(y), op.fbp(y)
    assert calls == []


def test_autograd_through_the_numba_forward_is_the_numba_adjoint():
    """∇ ½‖Ax − y‖² = Aᵀ(Ax − y), with A and Aᵀ the numba kernels (the operator's autograd Function)."""
    geo = _geometry("fan-flat-per-item")
    op = ct.Radon(geo)
    x, y = _data(geo, torch.float64, seed=5)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(0.5 * (op(xg) - y).pow(2).sum(), xg)
    expected = ct_numba.radon_adjoint(ct_numba.radon_forward(x, geo) - y, geo)
    torch.testing.assert_close(grad, expected, rtol=0, atol=0)


def test_kernels_keep_torch_thread_count():
    """numba's omp layer shares torch's libgomp; running the kernels must not change torch's setting,
    and numba then uses torch's count (here 1)."""
    import numba

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        geo = _geometry("parallel")
        x, _ = _data(geo, torch.float32, seed=6)
        ct_numba.radon_forward(x, geo)
        assert torch.get_num_threads() == 1
        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_bad_inputs_name_the_expected_shapes():
    geo = _geometry("parallel-per-item-fine-detector")
    with pytest.raises(ValueError, match=r"\[B, 1, 31, 31\].*\(2, 1, 31, 32\)"):
        ct_numba.radon_forward(torch.zeros(2, 1, 31, 32), geo)
    with pytest.raises(ValueError, match="batch of 2"):
        ct_numba.radon_forward(torch.zeros(3, 1, 31, 31), geo)
    with pytest.raises(ValueError, match=r"\[B, 1, 12, 40\]"):
        ct_numba.radon_adjoint(torch.zeros(2, 1, 12, 41), geo)
    with pytest.raises(ValueError, match="float32 or float64"):
        ct_numba.radon_adjoint(torch.zeros(2, 1, 12, 40, dtype=torch.float16), geo)
