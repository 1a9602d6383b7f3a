"""Sampler benchmark on the analytic (Gaussian) prior: cost and distance to the exact posterior.

Per method, on the 8×8 complex Cartesian MRI oracle problem of tests/samplers (batch of 256,
σ_y = 0.1, 0 for ddnm as in tests/samplers/test_posterior.py): NFE, backward passes, wall time, the time
spent inside the denoiser (forward calls timed directly; backward passes estimated as count × the
measured cost of one denoiser backward), the sampler's own overhead = 1 − denoiser/wall, and the
Gaussian-fit 2-Wasserstein distance between the samples (mean, covariance) and the exact posterior:
W2² = ‖m̂ − m‖² + tr(Ŝ + Σ − 2(Σ^{½} Ŝ Σ^{½})^{½}). Run: ``python benchmarks/samplers.py [--steps-scale 1]``.

The analytic denoiser is a 64×64 matrix product, far cheaper than a UNet, so the overhead column is a
worst case: with a real network the same absolute overhead is a few percent or less.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from medrecon import samplers  # noqa: E402
from tests.samplers.cases import mri_problem  # noqa: E402
from tests.samplers.oracle import posterior, to_real  # noqa: E402
# steps and options per method: those of the posterior test (recguide and feng2023 have their own tests)
from tests.samplers.test_posterior import CONFIG  # noqa: E402


class Timed:
    """Wraps a denoiser and accumulates the seconds spent in its forward calls."""

    def __init__(self, d):
        self.d, self.seconds = d, 0.0
        self.sigma_min, self.sigma_max = d.sigma_min, d.sigma_max

    def __call__(self, x, sigma):
        t = time.perf_counter()
        out = self.d(x, sigma)
        self.seconds += time.perf_counter() - t
        return out


def backward_cost(d, x, reps: int = 20) -> float:
    """Seconds of one backward pass through the denoiser (forward+backward minus forward)."""
    s = torch.full((x.shape[0],), 0.5, dtype=torch.float64)
    t = time.perf_counter()
    for _ in range(reps):
        d(x, s)
    fwd = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(reps):
        leaf = x.clone().requires_grad_(True)
        out = d(leaf, s)
        torch.autograd.grad((out.abs() ** 2).sum(), leaf)
    return max(0.0, (time.perf_counter() - t - fwd) / reps)


def w2(samples: np.ndarray, m: np.ndarray, S: np.ndarray) -> float:
    mh, Sh = samples.mean(0), np.cov(samples, rowvar=False)
    r = scipy.linalg.sqrtm(S)
    cross = scipy.linalg.sqrtm(r @ Sh @ r).real
    return float(np.sqrt(max(0.0, np.sum((mh - m) ** 2) + np.trace(Sh + S - 2 * cross))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps-scale", type=float, default=1.0)
    args = p.parse_args()
    rows = ["| method | steps | NFE | backward | wall s | denoiser s | overhead | W2 to posterior | W2 / √tr Σ |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, (config, _) in CONFIG.items():
        sy = 0.1 if name != "ddnm" else 0.0
        prior, op, y = mri_problem(sy, args.batch)
        options = dict(config)
        steps = max(2, int(options.pop("steps") * args.steps_scale))
        timed = Timed(prior)
        x, st = samplers.run(name, timed, op, y, noise_std=sy, steps=steps, generator=torch.Generator().manual_seed(0),
                             return_stats=True, **options)
        den = timed.seconds + st.backward_passes * (backward_cost(prior, x) if st.backward_passes else 0.0)
        m, S = posterior(prior, op, y, sy)
        d = w2(to_real(x).numpy(), m.numpy(), S.numpy())
        rows.append(f"| {name} | {steps} | {st.nfe} | {st.backward_passes} | {st.seconds:.2f} | {den:.2f} | "
                    f"{100 * (1 - den / st.seconds):.0f}% | {d:.3f} | {d / float(S.trace().sqrt()):.3f} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
