"""Shared checks every operator in the registry must pass (sigpy/deepinv style, flags not names).

Each case module (``cases_mri.py``, ``cases_ct.py``, ...) exposes ``CASES: dict[str, Callable[[torch.dtype],
OperatorCase]]``: a factory that builds a small operator in the requested real precision
(float32 or float64). Add an operator by adding a case, never by special-casing a name here.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from physics import Identity, LinearOperator
from tests.physics.registry import OperatorCase, all_cases

CASES = all_cases()
PRECISION = {torch.float32: 1e-5, torch.float64: 1e-10}


def _input(case: OperatorCase, batch: int, real_dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    op = case.op
    shape = (batch,) + op.ishape
    x = torch.randn(shape, dtype=real_dtype, generator=g)
    if op.idomain == "complex":
        x = torch.complex(x, torch.randn(shape, dtype=real_dtype, generator=g))
    return x


@pytest.mark.parametrize("real_dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_adjointness(name, real_dtype):
    case = CASES[name](real_dtype)
    err = case.op.check_adjoint(dtype=real_dtype, generator=torch.Generator().manual_seed(1))
    assert err < PRECISION[real_dtype], f"{name}: dot-test error {err:.3g}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_autograd_gradient_is_the_adjoint(name):
    case = CASES[name](torch.float64)
    op = case.op
    b = op.batch or 2
    x = _input(case, b, torch.float64).requires_grad_(True)
    g = torch.Generator().manual_seed(3)
    y = torch.randn((b,) + op.oshape, dtype=torch.float64, generator=g)
    if op.odomain == "complex":
        y = torch.complex(y, torch.randn((b,) + op.oshape, dtype=torch.float64, generator=g))
    loss = 0.5 * (op(x) - y).abs().pow(2).sum()
    (grad,) = torch.autograd.grad(loss, x)
    expected = op.adjoint(op(x.detach()) - y)
    # PyTorch's gradient of a real loss w.r.t. a complex input is the conjugate-Wirtinger one: 2·∂L/∂x̄ = Aᴴ(Ax − y).
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_of_four_equals_four_singles(name):
    case = CASES[name](torch.float32)
    if case.op.batch is not None:
        pytest.skip("operator holds per-item state; covered by its batched case")
    x = _input(case, 4, torch.float32)
    full = case.op(x)
    singles = torch.cat([case.op(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(full, singles, rtol=1e-5, atol=1e-5)
    back = case.op.adjoint(full)
    torch.testing.assert_close(back, torch.cat([case.op.adjoint(full[i : i + 1]) for i in range(4)]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("real_dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_dtype_and_device_preserved(name, real_dtype):
    case = CASES[name](real_dtype)
    op = case.op
    x = _input(case, op.batch or 1, real_dtype)
    y = op(x)
    assert y.device == x.device and op.adjoint(y).device == x.device
    expected = x.dtype if op.idomain == op.odomain else (torch.complex64 if real_dtype == torch.float32 else torch.complex128)
    assert y.dtype == expected, f"{name}: {x.dtype} -> {y.dtype}"
    assert op.adjoint(y).dtype == x.dtype


@pytest.mark.parametrize("name", sorted(CASES))
def test_linearity(name):
    case = CASES[name](torch.float64)
    op = case.op
    b = op.batch or 2
    x1, x2 = _input(case, b, torch.float64, 1), _input(case, b, torch.float64, 2)
    torch.testing.assert_close(op(2.0 * x1 - 3.0 * x2), 2.0 * op(x1) - 3.0 * op(x2))


@pytest.mark.parametrize("name", sorted(CASES))
def test_norm_matches_case(name):
    case = CASES[name](torch.float64)
    if case.norm is None:
        pytest.skip("no closed-form norm for this case")
    est = case.op.norm(iterations=100, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert abs(est - case.norm) <= 1e-3 * case.norm, f"{name}: power-method norm {est} vs {case.norm}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_norm_without_a_generator_is_deterministic_and_leaves_the_global_random_state(name):
    """``norm()`` starts its power iteration from a fixed seed: the samplers divide step sizes by it, so a
    start drawn from the global state made their output depend on that state (a masked FFT's float32
    estimate is 1.0 or 0.99999994 depending on it, which moved MCG's samples by 1e-9)."""
    op = CASES[name](torch.float64).op
    torch.manual_seed(0)
    state = torch.random.get_rng_state()
    first = op.norm(iterations=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(274)
    assert op.norm(iterations=5) == first


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape_errors_name_both_shapes(name):
    case = CASES[name](torch.float32)
    op = case.op
    bad = torch.zeros((op.batch or 1,) + tuple(s + 1 for s in op.ishape), dtype=torch.complex64 if op.idomain == "complex" else torch.float32)
    with pytest.raises(ValueError) as info:
        op(bad)
    msg = str(info.value)
    assert str(tuple(bad.shape)) in msg and ", ".join(map(str, op.ishape)) in msg


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrong_domain_rejected(name):
    case = CASES[name](torch.float32)
    op = case.op
    shape = (op.batch or 1,) + op.ishape
    wrong = torch.zeros(shape, dtype=torch.float32) if op.idomain == "complex" else torch.zeros(shape, dtype=torch.complex64)
    with pytest.raises(ValueError):
        op(wrong)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pinv_solves_least_squares(name):
    case = CASES[name](torch.float64)
    op = case.op
    x = _input(case, op.batch or 1, torch.float64, 5)
    y = op(x)
    x_hat, info = op.pinv(y, tol=1e-10, max_iter=500, damping=case.pinv_damping, return_info=True)
    # Normal-equation residual of the (damped) least-squares problem.
    res = op.adjoint(op(x_hat) - y) + case.pinv_damping * x_hat
    rel = (res.abs().pow(2).sum() / op.adjoint(y).abs().pow(2).sum()).sqrt()
    assert rel < 1e-6, f"{name}: normal-equation residual {rel:.3g} after {info['iterations']} iterations"


# -- Weighted: the statistically weighted data term ------------------------------------------------
def _radon_12():
    import math

    from physics import ParallelBeam, Radon

    return Radon(ParallelBeam(16, torch.arange(12, dtype=torch.float64) * math.pi / 12))


def test_weighted_fbp_removes_the_weights_first():
    from physics import Weighted

    radon = _radon_12()
    g = torch.Generator().manual_seed(3)
    x = torch.rand((2, 1, 16, 16), generator=g, dtype=torch.float64)
    w = 0.3 + torch.rand((2, *radon.oshape), generator=g, dtype=torch.float64)
    op = Weighted(radon, w)
    torch.testing.assert_close(op(x), w * radon(x))
    torch.testing.assert_close(op.fbp(op(x)), radon.fbp(radon(x)))
    torch.testing.assert_close(op.fbp(op(x), filter="shepp-logan"), radon.fbp(radon(x), filter="shepp-logan"))
    assert not hasattr(Weighted(Identity((1, 3, 3)), torch.ones(1, 3, 3)), "fbp")  # only where A has one


def test_weighted_least_squares_is_the_weighted_solution():
    """CG on the whitened operator solves the weighted normal equations AᵀW²A x = AᵀW²y."""
    from physics import Weighted

    g = torch.Generator().manual_seed(4)
    mat = torch.randn(9, 4, generator=g, dtype=torch.float64)
    w = 0.2 + torch.rand(9, generator=g, dtype=torch.float64)
    y = torch.randn(1, 1, 9, generator=g, dtype=torch.float64)

    class Dense(LinearOperator):
        def __init__(self):
            super().__init__((1, 4), (1, 9), idomain="real")

        def _forward(self, x):
            return x @ mat.T

        def _adjoint(self, v):
            return v @ mat

    x_hat = Weighted(Dense(), w.reshape(1, 9)).pinv(w * y, tol=1e-12, max_iter=100)
    wm = w[:, None] * mat
    expected = torch.linalg.lstsq(wm, w * y[0, 0]).solution
    torch.testing.assert_close(x_hat[0, 0], expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("make, why", [
    (lambda o: torch.ones(1, *o[:-1], o[-1] - 1), "shape"),
    (lambda o: torch.zeros(1, *o), "> 0"),
    (lambda o: torch.full((1, *o), float("nan")), "finite"),
    (lambda o: torch.ones(3, *o), "batch"),
], ids=["shape", "zero", "nan", "batch"])
def test_weighted_rejects_bad_weights(make, why):
    from physics import ParallelBeam, Radon, Weighted

    angles = torch.rand((2, 12), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    radon = Radon(ParallelBeam(16, angles))  # per-item angles: batch 2
    with pytest.raises(ValueError, match=why):
        Weighted(radon, make(radon.oshape))
    with pytest.raises(TypeError):
        Weighted(radon, torch.ones(1, *radon.oshape, dtype=torch.complex64))
