"""The Triton kernels of ``physics.kernels`` against their torch references, on the CPU.

The kernels run in the Triton interpreter: ``TRITON_INTERPRET=1`` is set here before triton is
imported (the Makefile's ``make test`` sets it too). Triton reads it when a kernel is *defined*, so a
kernel module imported earlier without it is reloaded. Without triton the module is skipped.
Sizes are small (MRI 4 coils × 16×12, CT 32² with 12 views, batch 2) to keep the interpreter fast.
"""
from __future__ import annotations

import importlib
import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="triton is not installed: the GPU kernels are optional (pip install medrecon[gpu])")

import physics.kernels as kernels  # noqa: E402
from physics.fourier import fft2c  # noqa: E402
from physics.operator import inner  # noqa: E402


def _interpreted(name: str, kernel: str):
    """Import ``name`` with its kernels defined under the interpreter (reload if imported before)."""
    module = importlib.import_module(name)
    if type(getattr(module, kernel)).__name__ != "InterpretedFunction":
        module = importlib.reload(module)
    return module


mri_dc = _interpreted("physics.kernels.mri_dc", "_expand_kernel")

RTOL = 1e-5


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _crandn(*shape: int, g: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    return torch.complex(torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape, generator=g, dtype=dtype))


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL) -> None:
    """‖actual − expected‖_∞ ≤ rtol·‖expected‖_∞ (relative to the largest value, as float32 kernels allow)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    err = float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30))
    assert err <= rtol, f"relative error {err:.3g} > {rtol:g}"


def _normalised_maps(batch: int, coils: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
    s = _crandn(batch, coils, h, w, g=g)
    return s / s.abs().square().sum(dim=1, keepdim=True).sqrt()


# ------------------------------------------------------------------------------------------------
# Dispatch rules
# ------------------------------------------------------------------------------------------------
def test_auto_backend_uses_torch_on_cpu_and_triton_inside_interpreted():
    x = torch.zeros(1)
    assert not kernels.use_triton(x)
    with kernels.interpreted():
        assert kernels.use_triton(x)
    assert not kernels.use_triton(x)


def test_unknown_backend_is_rejected():
    x = torch.zeros(1, 1, 4, 4, dtype=torch.complex64)
    with pytest.raises(ValueError, match="backend must be"):
        mri_dc.sense_expand(x, None, backend="cuda")


# ------------------------------------------------------------------------------------------------
# MRI: the checkerboard identity, each kernel vs its reference, the fused operator pair, the DC step
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 12), (14, 12), (2, 6)], ids=["s=+1", "s=-1", "tiny"])
def test_checkerboard_sign_trick_equals_centred_fft(shape):
    """fft2c(x) = s·c⊙fft2(c⊙x), c = (−1)^(i+j), s = (−1)^((H+W)/2), for even H, W."""
    h, w = shape
    x = _crandn(3, 1, h, w, g=_gen(), dtype=torch.float64)
    c = mri_dc.checkerboard(h, w, dtype=torch.float64)
    s = (-1.0) ** ((h + w) // 2)
    torch.testing.assert_close(s * c * torch.fft.fft2(c * x, norm="ortho"), fft2c(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sign", [False, True], ids=["plain", "checkerboard"])
@pytest.mark.parametrize("map_batch", [1, 2], ids=["shared-maps", "per-item-maps"])
def test_sense_expand_and_combine_match_reference(sign, map_batch):
    g = _gen(1)
    x, k = _crandn(2, 1, 16, 12, g=g), _crandn(2, 4, 16, 12, g=g)
    maps = _crandn(map_batch, 4, 16, 12, g=g)
    assert_rel_close(mri_dc.sense_expand(x, maps, checkerboard_sign=sign, backend="triton"),
                     mri_dc.sense_expand_reference(x, maps, checkerboard_sign=sign))
    assert_rel_close(mri_dc.sense_combine(k, maps, checkerboard_sign=sign, backend="triton"),
                     mri_dc.sense_combine_reference(k, maps, checkerboard_sign=sign))


def test_single_coil_expand_is_the_sign_only():
    x = _crandn(2, 1, 16, 12, g=_gen(2))
    out = mri_dc.sense_expand(x, None, checkerboard_sign=True, backend="triton")
    assert_rel_close(out, x * mri_dc.checkerboard(16, 12))


@pytest.mark.parametrize(
    "mask_shape", [(1, 1, 1, 12), (2, 1, 16, 12), (2, 4, 16, 12)], ids=["columns", "per-item-2d", "per-coil"]
)
def test_kspace_blend_matches_reference(mask_shape):
    """(1 − λM)·k + λ·M·(y + σz) with λ, σ per item and a general (strided, broadcast) mask."""
    g = _gen(3)
    k, y, z = (_crandn(2, 4, 16, 12, g=g) for _ in range(3))
    mask = torch.rand(mask_shape, generator=g)
    lam, sigma = torch.tensor([0.25, 1.0]), torch.tensor([0.5, 2.0])
    assert_rel_close(mri_dc.kspace_blend(k, y, mask, lam=lam, sigma=sigma, noise=z, backend="triton"),
                     mri_dc.kspace_blend_reference(k, y, mask, lam=lam, sigma=sigma, noise=z))


def test_hard_replacement_keeps_measured_entries_and_model_elsewhere():
    g = _gen(4)
    k, y = _crandn(2, 4, 16, 12, g=g), _crandn(2, 4, 16, 12, g=g)
    mask = torch.rand(1, 1, 1, 12, generator=g) > 0.5
    out = mri_dc.kspace_blend(k, y, mask, lam=1.0, backend="triton")
    m = mask.expand_as(y)
    assert torch.equal(out[m], y[m]) and torch.equal(out[~m], k[~m])


@pytest.mark.parametrize("shape", [(16, 12), (14, 12)], ids=["s=+1", "s=-1"])
def test_fused_sense_pair_matches_reference_and_is_adjoint(shape):
    h, w = shape
    g = _gen(5)
    x, y = _crandn(2, 1, h, w, g=g), _crandn(2, 4, h, w, g=g)
    maps = _crandn(2, 4, h, w, g=g)
    mask = (torch.rand(2, 1, 1, w, generator=g) > 0.4).float()
    ax = mri_dc.sense_forward(x, maps, mask, backend="triton")
    ahy = mri_dc.sense_adjoint(y, maps, mask, backend="triton")
    assert_rel_close(ax, mri_dc.sense_forward_reference(x, maps, mask))
    assert_rel_close(ahy, mri_dc.sense_adjoint_reference(y, maps, mask))
    lhs, rhs = inner(ax, y), inner(x, ahy)
    scale = (inner(ax, ax) * inner(y, y)).sqrt()
    assert float(((lhs - rhs).abs() / scale).max()) < 1e-5


@pytest.mark.parametrize("coils", [4, None], ids=["multi-coil", "single-coil"])
def test_dc_step_matches_reference(coils):
    g = _gen(6)
    c = coils or 1
    x, y, z = _crandn(2, 1, 16, 12, g=g), _crandn(2, c, 16, 12, g=g), _crandn(2, c, 16, 12, g=g)
    maps = None if coils is None else _crandn(1, c, 16, 12, g=g)
    mask = torch.rand(1, 1, 1, 12, generator=g) > 0.5
    kwargs = dict(maps=maps, lam=torch.tensor([0.3, 0.9]), sigma=0.7, noise=z)
    assert_rel_close(mri_dc.dc_step(x, y, mask, backend="triton", **kwargs),
                     mri_dc.dc_step_reference(x, y, mask, **kwargs))


def test_dc_step_with_zero_weight_is_identity_for_normalised_maps():
    g = _gen(7)
    x, y = _crandn(2, 1, 16, 12, g=g), _crandn(2, 4, 16, 12, g=g)
    maps = _normalised_maps(2, 4, 16, 12, g)
    out = mri_dc.dc_step(x, y, torch.ones(1, 1, 1, 12), maps=maps, lam=0.0, backend="triton")
    assert_rel_close(out, x)


def test_single_coil_hard_dc_step_is_the_projection_onto_measurements():
    """λ = 1, σ = 0: the measured k-space entries of x' are exactly y (Song et al. 2022, hard constraint)."""
    g = _gen(8)
    x, y = _crandn(2, 1, 16, 12, g=g), _crandn(2, 1, 16, 12, g=g)
    mask = (torch.rand(1, 1, 1, 12, generator=g) > 0.5).expand(2, 1, 16, 12)
    out = mri_dc.dc_step(x, y, mask, lam=1.0, backend="triton")
    k = fft2c(out)
    torch.testing.assert_close(k[mask], y[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(k[~mask], fft2c(x)[~mask], rtol=1e-5, atol=1e-5)


def test_odd_sizes_and_double_precision_use_the_torch_path(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the Triton launcher must not be used here")

    monkeypatch.setattr(mri_dc, "_launch_expand", fail)
    g = _gen(9)
    x, y = _crandn(2, 1, 15, 12, g=g), _crandn(2, 4, 15, 12, g=g)
    maps = _crandn(1, 4, 15, 12, g=g)
    mask = torch.ones(1, 1, 1, 12)
    assert_rel_close(mri_dc.dc_step(x, y, mask, maps=maps, backend="triton"), mri_dc.dc_step_reference(x, y, mask, maps=maps))
    x64 = _crandn(2, 1, 16, 12, g=g, dtype=torch.float64)
    maps64 = _crandn(1, 4, 16, 12, g=g, dtype=torch.float64)
    out = mri_dc.sense_forward(x64, maps64, mask, backend="triton")
    assert out.dtype == torch.complex128


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x, y, s, m: mri_dc.dc_step(x[:, :, :8], y, m, maps=s), "disagree"),
        (lambda x, y, s, m: mri_dc.dc_step(x, y, m, maps=s[:, :3]), "coils"),
        (lambda x, y, s, m: mri_dc.dc_step(x, y, torch.ones(1, 1, 1, 5), maps=s), "does not broadcast"),
        (lambda x, y, s, m: mri_dc.kspace_blend(y, y, m, lam=torch.ones(3)), "one value per batch item"),
        (lambda x, y, s, m: mri_dc.sense_expand(x.real, s), r"\[B, 1, H, W\]"),
    ],
    ids=["image-size", "coil-count", "mask-shape", "lambda-batch", "real-image"],
)
def test_bad_input_raises_value_error_naming_shapes(call, message):
    g = _gen(10)
    x, y, s = _crandn(2, 1, 16, 12, g=g), _crandn(2, 4, 16, 12, g=g), _crandn(1, 4, 16, 12, g=g)
    with pytest.raises(ValueError, match=message):
        call(x, y, s, torch.ones(1, 1, 1, 12))


def test_multicoil_mri_operator_runs_the_fused_kernels_with_exact_autograd(monkeypatch):
    """``physics.mri.MultiCoilMRI`` dispatches to the fused kernels (here through the interpreter) and
    its autograd backward is the fused adjoint: ∇ ½‖Ax − y‖² = Aᴴ(Ax − y) as on the torch path."""
    from physics.mri import MultiCoilMRI

    calls = []
    for name in ("_launch_expand", "_launch_combine"):
        original = getattr(mri_dc, name)
        monkeypatch.setattr(mri_dc, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    g = _gen(11)
    maps = _normalised_maps(2, 4, 16, 12, g)
    mask = torch.rand(2, 12, generator=g) < 0.5
    op = MultiCoilMRI(mask, maps)
    x, y = _crandn(2, 1, 16, 12, g=g), _crandn(2, 4, 16, 12, g=g)
    expected_fwd, expected_adj = op(x), op.adjoint(y)  # torch path (CPU, outside interpreted())
    with kernels.interpreted():
        assert_rel_close(op(x), expected_fwd)
        assert_rel_close(op.adjoint(y), expected_adj)
        xg = x.clone().requires_grad_(True)
        loss = 0.5 * (op(xg) - y).abs().pow(2).sum()
        (grad,) = torch.autograd.grad(loss, xg)
    assert {"_launch_expand", "_launch_combine"} <= set(calls)
    assert_rel_close(grad, op.adjoint(op(x) - y))


# ------------------------------------------------------------------------------------------------
# CT: the Joseph pair of physics.ct, parallel and fan beam
# ------------------------------------------------------------------------------------------------
import physics.ct as ct  # noqa: E402

ct_project = _interpreted("physics.kernels.ct_project", "_forward_kernel")

N_CT, VIEWS = 32, 12


def _ct_geometry(name: str):
    g = _gen(20)
    full = torch.linspace(0, torch.pi, VIEWS + 1, dtype=torch.float64)[:-1]
    circle = torch.linspace(0, 2 * torch.pi, VIEWS + 1, dtype=torch.float64)[:-1]
    if name == "parallel":
        return ct.ParallelBeam(N_CT, full)
    if name == "parallel-per-item-fine-detector":  # odd N, angles per batch item, 40 detectors of pitch 0.7
        return ct.ParallelBeam(N_CT - 1, 7 * torch.rand(2, VIEWS, generator=g, dtype=torch.float64), detectors=40,
                               detector_spacing=0.7)
    if name == "fan-equiangular":
        return ct.FanBeam(N_CT, circle, source_distance=60.0, detector_distance=40.0)
    if name == "fan-flat-per-item":
        return ct.FanBeam(N_CT, circle[None] + torch.tensor([[0.0], [0.3]], dtype=torch.float64), source_distance=50.0,
                          detector_distance=20.0, detectors=50, detector_spacing=1.3, detector="flat")
    raise KeyError(name)


CT_GEOMETRIES = ["parallel", "parallel-per-item-fine-detector", "fan-equiangular", "fan-flat-per-item"]


@pytest.mark.parametrize("name", CT_GEOMETRIES)
def test_ct_kernels_match_the_torch_radon_and_are_adjoint(name):
    geo = _ct_geometry(name)
    op = ct.Radon(geo)
    g = _gen(21)
    n = geo.image_size
    batch = geo.batch or 3  # shared angles: 3 items, so a program's group of items is partly masked
    x = torch.randn(batch, 1, n, n, generator=g)
    y = torch.randn(batch, 1, geo.views, geo.detectors, generator=g)
    with kernels.torch_only():  # the torch reference itself, not the numba CPU kernels
        expected_fwd, expected_adj = op(x), op.adjoint(y)
    ax = ct_project.radon_forward(x, geo, backend="triton")
    aty = ct_project.radon_adjoint(y, geo, backend="triton")
    assert_rel_close(ax, expected_fwd)
    assert_rel_close(aty, expected_adj)
    lhs, rhs = inner(ax, y), inner(x, aty)
    assert float(((lhs - rhs).abs() / (inner(ax, ax) * inner(y, y)).sqrt()).max()) < 1e-5
    # every launch a GPU may choose (batch-outer and batch-inner layouts, their blocks) computes the same
    proj = ct_project.JosephProjector(geo)
    for direction, run, expected in (("forward", proj.forward, expected_fwd), ("adjoint", proj.adjoint, expected_adj)):
        configs = ct_project.candidate_configs(direction, batch, geo.batch is None)
        assert len(configs) == (3 if geo.batch is None else 1)
        for cfg in configs:
            assert_rel_close(run(x if direction == "forward" else y, cfg), expected)


@pytest.mark.parametrize("batch", [1, 6])
def test_ct_batch_inner_layout_pads_and_unpads_any_batch(batch):
    """Batch-inner launches copy the batch into groups of ``items`` (zero-padded); the result must not
    depend on the padding or on how items fall into groups."""
    geo = _ct_geometry("parallel")
    proj = ct_project.JosephProjector(geo)
    g = _gen(24)
    x = torch.randn(batch, 1, N_CT, N_CT, generator=g)
    y = torch.randn(batch, 1, geo.views, geo.detectors, generator=g)
    outer_f = ct_project.LaunchConfig("batch-outer", 2, (128,))
    outer_a = ct_project.LaunchConfig("batch-outer", 2, (16, 32))
    for items in (2, 4, 8):  # 6 items: 3 full groups, 2 groups with 2 padded, 1 group with 2 padded
        torch.testing.assert_close(proj.forward(x, ct_project.LaunchConfig("batch-inner", items, (32,))),
                                   proj.forward(x, outer_f), rtol=1e-6, atol=1e-5)
        torch.testing.assert_close(proj.adjoint(y, ct_project.LaunchConfig("batch-inner", items, (8, 16))),
                                   proj.adjoint(y, outer_a), rtol=1e-6, atol=1e-5)


def test_ct_double_precision_uses_the_torch_path(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the Triton projector must not run for float64")

    monkeypatch.setattr(ct_project.JosephProjector, "forward", fail)
    monkeypatch.setattr(ct_project.JosephProjector, "adjoint", fail)
    geo = _ct_geometry("parallel")
    x = torch.randn(2, 1, N_CT, N_CT, dtype=torch.float64, generator=_gen(22))
    torch.testing.assert_close(ct_project.radon_forward(x, geo, backend="triton"), ct.Radon(geo)(x))


def test_ct_projector_rejects_wrong_shapes_and_batches():
    proj = ct_project.JosephProjector(_ct_geometry("parallel-per-item-fine-detector"))
    with pytest.raises(ValueError, match=r"\[B, 1, 31, 31\]"):
        proj.forward(torch.zeros(2, 1, 31, 32))
    with pytest.raises(ValueError, match="batch of 2"):
        proj.forward(torch.zeros(3, 1, 31, 31))
    with pytest.raises(ValueError, match="float32"):
        proj.adjoint(torch.zeros(2, 1, VIEWS, 40, dtype=torch.float64))
    # launches the kernels cannot run: several items per program with per-item angles, unknown layouts,
    # blocks of the wrong rank or not powers of two
    for cfg, direction in ((ct_project.LaunchConfig("batch-inner", 2, (32,)), "forward"),
                           (ct_project.LaunchConfig("batch-middle", 1, (32,)), "forward"),
                           (ct_project.LaunchConfig("batch-outer", 1, (16, 32)), "forward"),
                           (ct_project.LaunchConfig("batch-outer", 1, (16, 24)), "adjoint")):
        with pytest.raises(ValueError, match="invalid .* launch"):
            if direction == "forward":
                proj.forward(torch.zeros(2, 1, 31, 31), cfg)
            else:
                proj.adjoint(torch.zeros(2, 1, VIEWS, 40), cfg)


def test_radon_operator_runs_the_kernels_with_exact_autograd(monkeypatch):
    """``physics.ct.Radon`` dispatches float32 to the kernels (here through the interpreter); its
    autograd backward is the kernel adjoint: ∇ ½‖Ax − y‖² = Aᵀ(Ax − y)."""
    geo = _ct_geometry("parallel")
    op = ct.Radon(geo)
    calls = []
    for name in ("forward", "adjoint"):
        original = getattr(ct_project.JosephProjector, name)
        monkeypatch.setattr(ct_project.JosephProjector, name,
                            lambda self, t, _f=original, _n=name: calls.append(_n) or _f(self, t))
    g = _gen(23)
    x = torch.randn(2, 1, N_CT, N_CT, generator=g)
    y = torch.randn(2, 1, geo.views, geo.detectors, generator=g)
    with kernels.interpreted():
        xg = x.clone().requires_grad_(True)
        loss = 0.5 * (op(xg) - y).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, xg)
    assert calls == ["forward", "adjoint"]
    assert_rel_close(grad, op.adjoint(op(x) - y))
