"""Batched linear operators with exact, cheap autograd (sigpy's ``Linop`` idea, in torch).

A :class:`LinearOperator` maps a batch ``x`` of shape ``[B, *ishape]`` to ``y = A x`` of shape
``[B, *oshape]``. Subclasses implement ``_forward`` and ``_adjoint`` (the matched pair:
⟨Ax, y⟩ = ⟨x, Aᴴy⟩ with the real inner product ``Re Σ conj(a)·b``). The public :meth:`forward`
and :meth:`adjoint` check shapes and dtypes, then run through an ``autograd.Function`` whose
backward is the partner map, so ``∇ₓ ½‖Ax − y‖² = Aᴴ(Ax − y)`` is exact and costs one adjoint.

Operator state (masks, coil maps, angles) can be per batch item: ``batch`` is then that count and
inputs must have it; ``batch=None`` (or state with leading size 1) broadcasts over any batch.
Gradients flow to the operator's input only, never to its state.
"""
from __future__ import annotations

from typing import Callable, Literal, Optional, Sequence

import torch

__all__ = [
    "LinearOperator",
    "Composed",
    "Identity",
    "Scaled",
    "Weighted",
    "inner",
    "conjugate_gradient",
]

Domain = Literal["real", "complex"]


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-item real inner product ``Re Σ conj(a)·b`` over all but the first axis → shape ``[B]``."""
    prod = a.conj() * b if a.is_complex() or b.is_complex() else a * b
    return prod.reshape(prod.shape[0], -1).sum(dim=1).real


def _broadcast_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: Optional[torch.Tensor] = None,
    *,
    tol: float = 1e-6,
    max_iter: int = 50,
) -> tuple[torch.Tensor, dict]:
    """Solve ``N x = rhs`` for a Hermitian positive (semi-)definite ``N``, independently per batch item.

    Stops when every item has ``‖r‖ ≤ tol·‖rhs‖`` or after ``max_iter`` iterations.
    Returns ``(x, info)`` with ``info = {"iterations": int, "residual": tensor [B]}`` (relative).
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rr = inner(r, r)
    rhs_norm = inner(rhs, rhs).sqrt().clamp_min(torch.finfo(rr.dtype).tiny)
    it = 0
    for it in range(1, max_iter + 1):
        if bool((rr.sqrt() <= tol * rhs_norm).all()):
            it -= 1
            break
        Np = normal(p)
        pNp = inner(p, Np)
        alpha = torch.where(pNp > 0, rr / pNp.clamp_min(torch.finfo(rr.dtype).tiny), torch.zeros_like(rr))
        x = x + _broadcast_view(alpha, x).to(x.dtype) * p
        r = r - _broadcast_view(alpha, r).to(r.dtype) * Np
        rr_new = inner(r, r)
        beta = torch.where(rr > 0, rr_new / rr.clamp_min(torch.finfo(rr.dtype).tiny), torch.zeros_like(rr))
        p = r + _broadcast_view(beta, p).to(p.dtype) * p
        rr = rr_new
    return x, {"iterations": it, "residual": rr.sqrt() / rhs_norm}


class _Apply(torch.autograd.Function):
    """Runs ``op._forward`` (or ``op._adjoint``); the backward is the partner map."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "LinearOperator", adjoint: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.op, ctx.adjoint = op, adjoint
        return op._adjoint(x) if adjoint else op._forward(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        op = ctx.op
        # For a linear map B, PyTorch's vector-Jacobian product is Bᴴ·grad (also for complex maps).
        return (op.forward(grad) if ctx.adjoint else op.adjoint(grad)), None, None


class LinearOperator:
    """A batched linear map ``[B, *ishape] → [B, *oshape]``.

    Subclasses call ``super().__init__`` with the shapes and domains and implement ``_forward`` /
    ``_adjoint``; they may override ``_normal`` with a cheaper AᴴA. ``A(x)`` is ``A.forward(x)``,
    ``A.H`` the adjoint operator, ``A @ B`` the composition x ↦ A(B(x)).
    """

    def __init__(
        self,
        ishape: Sequence[int],
        oshape: Sequence[int],
        *,
        idomain: Domain = "complex",
        odomain: Optional[Domain] = None,
        batch: Optional[int] = None,
    ) -> None:
        self.ishape = tuple(int(s) for s in ishape)
        self.oshape = tuple(int(s) for s in oshape)
        self.idomain: Domain = idomain
        self.odomain: Domain = odomain or idomain
        self.batch = None if batch in (None, 1) else int(batch)
        self._adjoint_op: Optional[LinearOperator] = None

    # -- to implement ---------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _normal(self, x: torch.Tensor) -> torch.Tensor:
        return self._adjoint(self._forward(x))

    # -- checks ---------------------------------------------------------------------------------
    def _check(self, t: torch.Tensor, shape: tuple, domain: Domain, what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{self!r}: {what} must be a torch.Tensor, received {type(t).__name__}")
        if t.ndim != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            raise ValueError(
                f"{self!r}: expected {what} of shape [B, {', '.join(map(str, shape))}], received {tuple(t.shape)}"
            )
        if self.batch is not None and t.shape[0] != self.batch:
            raise ValueError(
                f"{self!r}: the operator holds state for a batch of {self.batch}, received {what} "
                f"with batch {t.shape[0]} (shape {tuple(t.shape)})"
            )
        if domain == "complex" and not t.is_complex():
            raise ValueError(f"{self!r}: expected a complex {what} (complex64/complex128), received {t.dtype}")
        if domain == "real" and not t.is_floating_point():
            raise ValueError(f"{self!r}: expected a real floating {what} (float32/float64), received {t.dtype}")

    # -- public maps ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``; differentiable, with ``Aᴴ`` as the backward."""
        self._check(x, self.ishape, self.idomain, "input")
        if torch.is_grad_enabled() and x.requires_grad:
            return _Apply.apply(x, self, False)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Aᴴ y``; differentiable, with ``A`` as the backward."""
        self._check(y, self.oshape, self.odomain, "measurement")
        if torch.is_grad_enabled() and y.requires_grad:
            return _Apply.apply(y, self, True)
        return self._adjoint(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """``AᴴA x``."""
        self._check(x, self.ishape, self.idomain, "input")
        if torch.is_grad_enabled() and x.requires_grad:
            return self.adjoint(self.forward(x))
        return self._normal(x)

    __call__ = forward

    @property
    def H(self) -> "LinearOperator":
        """The adjoint as an operator (cached)."""
        if self._adjoint_op is None:
            self._adjoint_op = _Adjoint(self)
        return self._adjoint_op

    def __matmul__(self, other: "LinearOperator") -> "LinearOperator":
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return Composed(self, other)

    def __rmul__(self, scale: float) -> "LinearOperator":
        return Scaled(self, scale)

    # -- solvers and checks ---------------------------------------------------------------------
    def pinv(
        self,
        y: torch.Tensor,
        *,
        damping: float = 0.0,
        tol: float = 1e-6,
        max_iter: int = 50,
        x0: Optional[torch.Tensor] = None,
        return_info: bool = False,
    ):
        """Least-squares solution ``argminₓ ‖Ax − y‖² + damping·‖x‖²`` by CG on the normal equations
        ``(AᴴA + damping·I) x = Aᴴy`` (per batch item, stopping at relative residual ``tol``).

        With ``return_info=True`` returns ``(x, {"iterations", "residual"})``.
        """
        rhs = self.adjoint(y)
        normal = self.normal if damping == 0 else (lambda v: self.normal(v) + damping * v)
        x, info = conjugate_gradient(normal, rhs, x0, tol=tol, max_iter=max_iter)
        return (x, info) if return_info else x

    def _random(self, shape: tuple, domain: Domain, batch: int, dtype, device, generator) -> torch.Tensor:
        real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
        t = torch.randn((batch,) + shape, dtype=real, device=device, generator=generator)
        if domain == "complex":
            t = torch.complex(t, torch.randn((batch,) + shape, dtype=real, device=device, generator=generator))
        return t

    def check_adjoint(
        self,
        *,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device | str] = None,
        batch: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> float:
        """Dot test: ``|⟨Ax, y⟩ − ⟨x, Aᴴy⟩| / (‖Ax‖‖y‖)`` for random x, y (largest over the batch).

        ``dtype`` selects the precision (float32/complex64 or float64/complex128).
        """
        b = batch or self.batch or 2
        x = self._random(self.ishape, self.idomain, b, dtype, device, generator)
        y = self._random(self.oshape, self.odomain, b, dtype, device, generator)
        Ax, Ahy = self.forward(x), self.adjoint(y)
        lhs, rhs = inner(Ax, y), inner(x, Ahy)
        scale = (inner(Ax, Ax) * inner(y, y)).sqrt().clamp_min(torch.finfo(lhs.dtype).tiny)
        return float(((lhs - rhs).abs() / scale).max())

    def norm(
        self,
        *,
        iterations: int = 30,
        dtype: torch.dtype = torch.float32,
        device: Optional[torch.device | str] = None,
        generator: Optional[torch.Generator] = None,
    ) -> float:
        """Spectral norm ‖A‖₂ by power iteration on AᴴA (largest over the operator's batch).

        Deterministic: without ``generator`` the start is drawn from a fixed-seed generator on
        ``device``, so the estimate does not depend on (or advance) the global random state."""
        if generator is None:
            generator = torch.Generator(device=device or "cpu").manual_seed(0)
        x = self._random(self.ishape, self.idomain, self.batch or 1, dtype, device, generator)
        x = x / _broadcast_view(inner(x, x).sqrt(), x)
        sq = torch.zeros(x.shape[0], dtype=torch.float64)
        for _ in range(iterations):
            z = self.normal(x)
            sq = inner(z, z).sqrt()
            x = z / _broadcast_view(sq.clamp_min(torch.finfo(sq.dtype).tiny), z).to(z.dtype)
        return float(sq.max().sqrt())

    def __repr__(self) -> str:
        return f"<[{'x'.join(map(str, self.ishape))}]->[{'x'.join(map(str, self.oshape))}] {type(self).__name__}>"


class _Adjoint(LinearOperator):
    def __init__(self, op: LinearOperator) -> None:
        super().__init__(op.oshape, op.ishape, idomain=op.odomain, odomain=op.idomain, batch=op.batch)
        self.op = op
        self._adjoint_op = op

    def _forward(self, x):
        return self.op._adjoint(x)

    def _adjoint(self, y):
        return self.op._forward(y)

    def __repr__(self) -> str:
        return f"{self.op!r}.H"


class Composed(LinearOperator):
    """``(A @ B)(x) = A(B(x))``; the adjoint applies ``Bᴴ(Aᴴ(y))``."""

    def __init__(self, outer: LinearOperator, inner_op: LinearOperator) -> None:
        if outer.ishape != inner_op.oshape or outer.idomain != inner_op.odomain:
            raise ValueError(
                f"cannot compose {outer!r} and {inner_op!r}: {outer!r} takes [B, {outer.ishape}] "
                f"({outer.idomain}) but {inner_op!r} returns [B, {inner_op.oshape}] ({inner_op.odomain})"
            )
        if outer.batch and inner_op.batch and outer.batch != inner_op.batch:
            raise ValueError(f"cannot compose {outer!r} (batch {outer.batch}) and {inner_op!r} (batch {inner_op.batch})")
        super().__init__(
            inner_op.ishape, outer.oshape, idomain=inner_op.idomain, odomain=outer.odomain,
            batch=outer.batch or inner_op.batch,
        )
        self.outer, self.inner = outer, inner_op

    def _forward(self, x):
        return self.outer._forward(self.inner._forward(x))

    def _adjoint(self, y):
        return self.inner._adjoint(self.outer._adjoint(y))

    def __repr__(self) -> str:
        return f"({self.outer!r} @ {self.inner!r})"


class Identity(LinearOperator):
    """``x ↦ x`` on ``[B, *shape]``."""

    def __init__(self, shape: Sequence[int], domain: Domain = "complex") -> None:
        super().__init__(shape, shape, idomain=domain)

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y


class Scaled(LinearOperator):
    """``x ↦ c·A x`` for a real scalar c."""

    def __init__(self, op: LinearOperator, scale: float) -> None:
        super().__init__(op.ishape, op.oshape, idomain=op.idomain, odomain=op.odomain, batch=op.batch)
        self.op, self.scale = op, float(scale)

    def _forward(self, x):
        return self.scale * self.op._forward(x)

    def _adjoint(self, y):
        return self.scale * self.op._adjoint(y)

    def _normal(self, x):
        return self.scale**2 * self.op._normal(x)


class Weighted(LinearOperator):
    """``x ↦ w ⊙ A x``: ``A`` followed by a real, positive weight per measurement.

    The use is a statistically weighted data term (penalised weighted least squares, PWLS; Sauer &
    Bouman, IEEE Trans. Signal Process. 41:534, 1993; Fessler, IEEE Trans. Med. Imaging 13:290, 1994):
    with measurements ``y = A x + n`` whose noise ``n_i`` has standard deviation ``σ_i``, the weights
    ``w_i = σ_ref/σ_i`` make ``w ⊙ y = (w ⊙ A) x + w ⊙ n`` a problem with white noise of standard
    deviation ``σ_ref``, so ``½‖w ⊙ (Ax − y)‖²/σ_ref²`` is the Gaussian negative log-likelihood (up to a constant) and every
    sampler or solver written for white noise uses the right one. ``weights``: real, finite and
    > 0, shaped ``oshape``, ``[1, *oshape]`` or ``[B, *oshape]`` (per batch item: ``batch = B``).

    When ``A`` has a filtered back-projection (``physics.Radon.fbp``), so does this operator:
    ``fbp(w ⊙ y) = A.fbp(y)``, the weights removed first, so FBP warm starts and FBP-preconditioned
    solvers see the measured sinogram unchanged.
    """

    def __init__(self, op: LinearOperator, weights: torch.Tensor) -> None:
        if not isinstance(weights, torch.Tensor) or weights.is_complex() or not weights.is_floating_point():
            raise TypeError(f"Weighted: weights must be a real floating torch.Tensor, received "
                            f"{type(weights).__name__ if not isinstance(weights, torch.Tensor) else weights.dtype}")
        w = weights[None] if weights.ndim == len(op.oshape) else weights
        if w.ndim != len(op.oshape) + 1 or tuple(w.shape[1:]) != op.oshape:
            raise ValueError(f"Weighted: weights must have shape {list(op.oshape)} or [B, {', '.join(map(str, op.oshape))}] "
                             f"to match {op!r}, received {tuple(weights.shape)}")
        if not bool(torch.isfinite(w).all()) or not bool((w > 0).all()):
            raise ValueError("Weighted: weights must be finite and > 0 (a zero weight drops a measurement: "
                             "remove it from the operator instead)")
        b = w.shape[0]
        if op.batch and b != 1 and b != op.batch:
            raise ValueError(f"Weighted: weights for a batch of {b} do not match {op!r} (batch {op.batch})")
        super().__init__(op.ishape, op.oshape, idomain=op.idomain, odomain=op.odomain,
                         batch=op.batch or (b if b != 1 else None))
        self.op, self.weights = op, w

    def _w(self, like: torch.Tensor) -> torch.Tensor:
        return self.weights.to(device=like.device, dtype=like.real.dtype if like.is_complex() else like.dtype)

    def _forward(self, x):
        y = self.op._forward(x)
        return self._w(y) * y

    def _adjoint(self, y):
        return self.op._adjoint(self._w(y) * y)

    @property
    def fbp(self) -> Callable[..., torch.Tensor]:
        """``y ↦ A.fbp(y / w, ...)`` when ``A`` has ``fbp``; otherwise no such attribute."""
        inner_fbp = getattr(self.op, "fbp", None)
        if inner_fbp is None:
            raise AttributeError(f"{self.op!r} has no fbp, so {self!r} has none")

        def fbp(y: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            return inner_fbp(y / self._w(y), *args, **kwargs)

        return fbp

    def __repr__(self) -> str:
        return f"Weighted({self.op!r})"
