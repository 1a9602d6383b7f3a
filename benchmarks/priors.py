"""Quality of the shipped priors: denoising PSNR gain on held-out synthetic images, and samples.

    .venv/bin/python benchmarks/priors.py [--priors mri ct] [--device cpu] [--size 128]
                                          [--steps 32] [--n 16] [--samples 6] [--seed 0]

1. **Denoising table.** For each prior and each held-out source of its kind (MRI: ``mri-brain``,
   ``mri-body``; CT: ``ct-head``, ``ct-body`` from :mod:`medrecon.data.synthetic`, split
   "heldout", a seed not used in training), images are scaled to [0, 1] magnitude (MRI: divided
   by max|x| per image; CT: the [0, 1] unit scale of ``medrecon.data.CT_SCALING``), noised as
   ``y = x + σ·n`` with ``n = medrecon.noise.randn_like`` (σ per real component) and denoised by
   ``D`` in the prior's own value scale (``y·s`` at level ``σ·s``, the result divided by ``s``,
   where ``s`` maps [0, 1] images back to the prior's scale). PSNR = 10·log10(1 / mean|x̂ − x|²)
   per image (complex error for MRI, so phase errors count), averaged over ``--n`` images. The
   gain (output − input PSNR) must reach 6, 8, 10, 12 dB at σ = 0.05, 0.1, 0.2, 0.5. Below it, a
   diagnostic at σ = 1 … 80 (:func:`high_sigma_table`): the denoiser's RMSE against that of the mean
   image, which ignores the input; where D is worse, samples get their global layout from noise.
2. **Samples.** Unconditional samples by the deterministic EDM Heun sampler (Karras et al. 2022,
   Algorithm 1) over the Karras σ schedule (ρ = 7) from the prior's σ_max to σ_min, then 0;
   written with held-out data for comparison to ``benchmarks/figures/prior_samples.png``.

Timings and numbers depend on the machine (and on others sharing it); the script prints where
it ran.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from any folder
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from medrecon import MedreconError, priors  # noqa: E402
from medrecon.noise import randn_like  # noqa: E402

SIGMAS = (0.05, 0.1, 0.2, 0.5)
HIGH_SIGMAS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # where a sampler decides the global layout
TARGETS = (6.0, 8.0, 10.0, 12.0)
SOURCES = {"mri": ("mri-brain", "mri-body"), "ct": ("ct-head", "ct-body")}
FIGURE = ROOT / "benchmarks" / "figures" / "prior_samples.png"


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: ``steps`` levels from σ_max to σ_min, then a trailing 0 (float64)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return torch.cat([(inv_max + ramp * (inv_min - inv_max)) ** rho, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def heun_sample(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Deterministic EDM sampler (Karras et al. 2022, Algorithm 1, no churn); ``x`` starts at σ₀."""
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        d = (x - denoiser(x, s)) / s  # dx/dσ of the probability-flow ODE
        x_next = x + (s_next - s) * d  # Euler step
        if s_next > 0:  # second-order correction
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s) * 0.5 * (d + d_next)
        x = x_next
    return x


def heldout(kind: str, n: int, size: int, device: torch.device, seed: int,
            anatomy: Optional[str] = None) -> dict[str, torch.Tensor]:
    """``{source name: [n, 1, size, size]}`` held-out images in the data module's value scale."""
    from medrecon.data import make_source  # written by the data engineer; guarded by the caller

    out = {}
    for k, name in enumerate(SOURCES[kind]):
        gen = torch.Generator(device=device).manual_seed(10_000 + 97 * seed + k)
        out[name] = make_source(name, device, anatomy_path=anatomy, split="heldout").sample(n, size, gen)
    return out


def unit_scale(x: torch.Tensor, is_complex: bool) -> torch.Tensor:
    """Per-image factor ``s`` [n] with ``x / s`` in [0, 1] magnitude (MRI: max|x|; CT: 1)."""
    if not is_complex:
        return torch.ones(x.shape[0], device=x.device)
    return x.abs().flatten(1).amax(1).clamp_min(1e-12)


@torch.no_grad()
def denoise_table(prior: priors.Prior, images: torch.Tensor, seed: int, batch: int) -> list[tuple[float, float, float]]:
    """``[(σ, input PSNR, output PSNR)]`` averaged over the images (module docstring)."""
    s = unit_scale(images, prior.complex)
    view = (-1, 1, 1, 1)
    x01 = images / s.reshape(view).to(images.real.dtype)
    rows = []
    for k, sigma in enumerate(SIGMAS):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        est = torch.cat([
            prior(y01[i:i + batch] * s[i:i + batch].reshape(view), sigma * s[i:i + batch]) / s[i:i + batch].reshape(view)
            for i in range(0, len(y01), batch)
        ])
        psnr = lambda a: (-10 * torch.log10((a - x01).abs().square().flatten(1).mean(1))).mean().item()
        rows.append((sigma, psnr(y01), psnr(est)))
    return rows


@torch.no_grad()
def high_sigma_table(prior: priors.Prior, images: torch.Tensor, seed: int, batch: int) -> list[tuple[float, float, float]]:
    """``[(σ, RMSE of D, RMSE of the mean image)]`` at the levels where sampling decides the global layout.

    Same [0, 1] scale and noise as :func:`denoise_table`. The reference is the leave-one-out mean of
    the other held-out images: an estimator that ignores the input. The MMSE denoiser beats it at
    every σ and tends to it as σ → ∞; a denoiser worse than it at σ has not learnt that level (too few
    training draws there), and samples started above that σ get their layout from noise."""
    s = unit_scale(images, prior.complex)
    view = (-1, 1, 1, 1)
    x01 = images / s.reshape(view).to(images.real.dtype)
    loo_mean = (x01.sum(0, keepdim=True) - x01) / max(len(x01) - 1, 1)
    rmse = lambda a: (a - x01).abs().square().flatten(1).mean(1).sqrt().mean().item()
    rows = []
    for k, sigma in enumerate(HIGH_SIGMAS):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + 100 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        est = torch.cat([
            prior(y01[i:i + batch] * s[i:i + batch].reshape(view), sigma * s[i:i + batch]) / s[i:i + batch].reshape(view)
            for i in range(0, len(y01), batch)
        ])
        rows.append((sigma, rmse(est), rmse(loo_mean)))
    return rows


def print_high_sigma(rows: list[tuple[float, float, float]]) -> None:
    print(f"  high noise: {'sigma':>6} {'RMSE of D':>10} {'RMSE of mean image':>19} {'D / mean':>9}")
    for sigma, r_d, r_mean in rows:
        print(f"              {sigma:6.1f} {r_d:10.4f} {r_mean:19.4f} {r_d / r_mean:9.2f}{'  (worse than the mean)' if r_d > r_mean else ''}")


def print_table(name: str, source: str, rows: list[tuple[float, float, float]]) -> bool:
    ok_all = True
    print(f"\n{name} prior on held-out {source}:")
    print(f"  {'sigma':>6} {'noisy PSNR':>11} {'denoised PSNR':>14} {'gain':>7} {'target':>7}  ok")
    for (sigma, p_in, p_out), target in zip(rows, TARGETS):
        ok = p_out - p_in >= target
        ok_all &= ok
        print(f"  {sigma:6.2f} {p_in:11.2f} {p_out:14.2f} {p_out - p_in:7.2f} {target:7.1f}  {'yes' if ok else 'NO'}")
    return ok_all


def to_display(x: torch.Tensor, is_complex: bool) -> torch.Tensor:
    """Images for display in [0, 1]: MRI magnitude / its 99.5th percentile; CT unit scale clipped."""
    x = x.detach().cpu()
    if is_complex:
        mag = x.abs()[:, 0]
        return (mag / torch.quantile(mag.flatten(1), 0.995, dim=1).clamp_min(1e-8)[:, None, None]).clamp(0, 1)
    return x[:, 0].clamp(0, 1)


def write_figure(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medrecon.io.atomic import atomic_path

    cols = max(r[1].shape[0] for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.6 * cols, 1.75 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_axis_off()
            if c < imgs.shape[0]:
                ax.imshow(imgs[c].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(label, fontsize=7, loc="left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--priors", nargs="+", default=["mri", "ct"], help="checkpoint names or paths")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=128, help="image size for the table and the samples")
    ap.add_argument("--steps", type=int, default=32, help="Heun steps for the samples (2 NFE each)")
    ap.add_argument("--n", type=int, default=16, help="held-out images per source for the table")
    ap.add_argument("--samples", type=int, default=6, help="unconditional samples per prior")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anatomy", default=None, help="MNI152 npz from data_scripts/export_anatomy.py (default: nilearn)")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'})")

    all_ok, fig_rows = True, []
    for name in args.priors:
        try:
            prior = priors.load(name, device=device)
        except MedreconError as err:
            print(f"\n[{name}] no checkpoint to benchmark: {err}")
            all_ok = False
            continue
        kind = "mri" if prior.complex else "ct"
        m = prior.manifest
        print(f"\n[{name}] {m.get('params', '?')} parameters, trained {m['steps']} steps on {m['device']} "
              f"({m['train_seconds'] / 60:.1f} min), patch {prior.image_size}, sigma [{prior.sigma_min}, {prior.sigma_max}]")
        try:
            data = heldout(kind, args.n, args.size, device, args.seed, args.anatomy)
        except (ImportError, AttributeError, MedreconError, OSError) as err:
            print(f"  held-out data unavailable ({type(err).__name__}: {err}); skipping the denoising table")
            data = {}
        for source, images in data.items():
            t0 = time.perf_counter()
            rows = denoise_table(prior, images, args.seed, args.batch)
            all_ok &= print_table(name, source, rows)
            print_high_sigma(high_sigma_table(prior, images, args.seed, args.batch))
            print(f"  ({time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        gen = torch.Generator(device=device).manual_seed(args.seed)
        dtype = torch.complex64 if prior.complex else torch.float32
        shape = (args.samples, prior.data_channels, args.size, args.size)
        x0 = prior.sigma_max * randn_like(torch.empty(shape, dtype=dtype, device=device), gen)
        sigmas = karras_sigmas(args.steps, prior.sigma_min, prior.sigma_max)
        samples = heun_sample(prior, x0, sigmas)
        print(f"  {args.samples} samples at {args.size}² in {args.steps} Heun steps "
              f"({2 * args.steps - 1} NFE): {time.perf_counter() - t0:.1f} s")
        fig_rows.append((f"{name}: samples ({args.steps} Heun steps)", to_display(samples, prior.complex)))
        for source, images in data.items():
            fig_rows.append((f"held-out {source}", to_display(images[: args.samples], prior.complex)))

    if fig_rows:
        write_figure(fig_rows, args.figure)
        print(f"\nwrote {args.figure}")
    print("\nall targets met" if all_ok else "\nsome targets NOT met (or priors missing)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
