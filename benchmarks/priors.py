"""Quality of the shipped priors: denoising PSNR gain on held-out synthetic images, and samples.

    .venv/bin/python benchmarks/priors.py [--priors mri ct] [--device cpu] [--size 128]
                                          [--steps 32] [--n 16] [--samples 6] [--seed 0]
    .venv/bin/python benchmarks/priors.py --transfer --size 128    # prior vs TV, held-out and real

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
   ``--transfer`` prints only a third table (:func:`transfer_table`): the prior against a TV
   denoiser with an oracle weight, on the quality benchmark's held-out images and on its real
   pydicom slices, at σ = 0.05–0.2; how much of the prior's lead survives on real anatomy. More
   rows split the question (:func:`transfer_sets`): the held-out anatomy without its background,
   sharp and enlarged 2× by interpolation, and each real file's views alone.
2. **Samples.** Unconditional samples by EDM's stochastic Heun sampler (Karras et al. 2022,
   Algorithm 2, ``--churn``; 0 gives the deterministic Algorithm 1) over the Karras σ schedule (ρ = 7)
   from the prior's σ_max to σ_min, then 0;
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
TRANSFER_SIGMAS = (0.05, 0.1, 0.2)
SWITCH_SIGMAS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 40.0, 80.0)  # candidate levels for a CoarseToFine switch
TV_WEIGHTS = (0.15, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)  # TV denoiser μ = w·σ, the best chosen per row
TV_ITERATIONS = 500  # Chambolle's dual iterations: 100 left CT held-out 0.33 dB short of convergence
TARGETS = (6.0, 8.0, 10.0, 12.0)
SOURCES = {"mri": ("mri-brain", "mri-body"), "ct": ("ct-head", "ct-body")}
FIGURE = ROOT / "benchmarks" / "figures" / "prior_samples.png"


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. 2022, eq. 5: ``steps`` levels from σ_max to σ_min, then a trailing 0 (float64)."""
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    inv_max, inv_min = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return torch.cat([(inv_max + ramp * (inv_min - inv_max)) ** rho, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def edm_sample(denoiser: Callable, x: torch.Tensor, sigmas: torch.Tensor, churn: float = 0.0,
               s_tmin: float = 0.05, s_tmax: float = 50.0, s_noise: float = 1.003,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """EDM's sampler (Karras et al. 2022, Algorithm 2; ``churn = 0`` is the deterministic Algorithm 1):
    at each level σᵢ in [s_tmin, s_tmax] raise the noise to σ̂ = σᵢ(1 + γ), γ = min(churn / N, √2 − 1), by
    adding fresh noise of level s_noise·sqrt(σ̂² − σᵢ²), then take a Heun step of the probability-flow ODE
    from σ̂ to σᵢ₊₁ (Euler on the last step to 0). ``x`` starts at σ₀; N = len(sigmas) − 1 steps. The
    defaults are EDM's ImageNet-64 values (Table 5: S_churn 40 at N = 256; at our N = 32 γ is capped)."""
    steps = len(sigmas) - 1
    for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
        gamma = min(churn / steps, math.sqrt(2.0) - 1.0) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * randn_like(x, generator)
        d = (x - denoiser(x, s_hat)) / s_hat  # dx/dσ of the probability-flow ODE
        x_next = x + (s_next - s_hat) * d  # Euler step
        if s_next > 0:  # second-order correction
            d_next = (x_next - denoiser(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
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


def to_unit(images: torch.Tensor, is_complex: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, images / s)``: the :func:`unit_scale` factors and the images on the [0, 1] scale."""
    s = unit_scale(images, is_complex)
    return s, images / s.reshape(-1, 1, 1, 1).to(images.real.dtype)


def rmse_and_mean_image(x01: torch.Tensor) -> tuple[Callable[[torch.Tensor], float], torch.Tensor]:
    """The mean per-image RMSE against ``x01`` and the leave-one-out mean image of ``x01`` (for each image,
    the mean of the others): the reference estimator that ignores its input."""
    loo_mean = (x01.sum(0, keepdim=True) - x01) / max(len(x01) - 1, 1)
    return (lambda a: (a - x01).abs().square().flatten(1).mean(1).sqrt().mean().item()), loo_mean


@torch.no_grad()
def denoise_table(prior: priors.Prior, images: torch.Tensor, seed: int, batch: int) -> list[tuple[float, float, float]]:
    """``[(σ, input PSNR, output PSNR)]`` averaged over the images (module docstring)."""
    s, x01 = to_unit(images, prior.complex)
    rows = []
    for k, sigma in enumerate(SIGMAS):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        est = denoise_unit(prior, y01, sigma, s, batch)
        rows.append((sigma, unit_psnr(y01, x01), unit_psnr(est, x01)))
    return rows


def denoise_unit(prior: Callable, y01: torch.Tensor, sigma: float, s: torch.Tensor, batch: int) -> torch.Tensor:
    """``D`` applied to ``[0, 1]``-scaled noisy images ``y01`` (noise σ there): evaluated in the prior's own
    value scale (``y01·s`` at level ``σ·s``, :func:`unit_scale`) and scaled back, ``batch`` images at a time."""
    view = (-1, 1, 1, 1)
    return torch.cat([
        prior(y01[i:i + batch] * s[i:i + batch].reshape(view), sigma * s[i:i + batch]) / s[i:i + batch].reshape(view)
        for i in range(0, len(y01), batch)
    ])


def unit_psnr(estimate: torch.Tensor, x01: torch.Tensor) -> float:
    """Mean over images of ``10·log10(1 / mean|x̂ − x|²)`` on the [0, 1] scale (complex error for MRI)."""
    return (-10 * torch.log10((estimate - x01).abs().square().flatten(1).mean(1))).mean().item()


@torch.no_grad()
def high_sigma_table(prior: priors.Prior, images: torch.Tensor, seed: int, batch: int) -> list[tuple[float, float, float]]:
    """``[(σ, RMSE of D, RMSE of the mean image)]`` at the levels where sampling decides the global layout.

    Same [0, 1] scale and noise as :func:`denoise_table`. The reference is the leave-one-out mean of
    the other held-out images: an estimator that ignores the input. The MMSE denoiser beats it at
    every σ and tends to it as σ → ∞; a denoiser worse than it at σ has not learnt that level (too few
    training draws there), and samples started above that σ get their layout from noise."""
    s, x01 = to_unit(images, prior.complex)
    rmse, loo_mean = rmse_and_mean_image(x01)
    rows = []
    for k, sigma in enumerate(HIGH_SIGMAS):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + 100 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        rows.append((sigma, rmse(denoise_unit(prior, y01, sigma, s, batch)), rmse(loo_mean)))
    return rows


@torch.no_grad()
def switch_table(pair: priors.CoarseToFine, images: torch.Tensor, seed: int, batch: int) -> list[tuple[float, float, float, float]]:
    """``[(σ, RMSE of the fine prior, RMSE of the coarse expert U·D_c(P x, σ/f), RMSE of the mean image)]``
    on :data:`SWITCH_SIGMAS`, same scale and noise as :func:`high_sigma_table`: where the expert may answer."""
    from medrecon.priors.base import sigma_tensor

    s, x01 = to_unit(images, pair.complex)
    rmse, loo_mean = rmse_and_mean_image(x01)
    coarse = lambda x, sigma: pair.coarse_estimate(x, sigma_tensor(sigma, x))
    rows = []
    for k, sigma in enumerate(SWITCH_SIGMAS):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + 300 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        rows.append((sigma, rmse(denoise_unit(pair.fine, y01, sigma, s, batch)),
                     rmse(denoise_unit(coarse, y01, sigma, s, batch)), rmse(loo_mean)))
    return rows


def choose_switch(tables: dict[str, list[tuple[float, float, float, float]]]) -> tuple[float, str]:
    """σ_switch from :func:`switch_table` rows of every held-out source: with ``σ_k`` the lowest level from
    which the expert's RMSE, averaged over the sources, is at most the fine prior's at every higher level,
    ``σ_switch = sqrt(σ_(k−1) · σ_k)`` (the geometric midpoint of the crossing). Raises if it never is."""
    sigmas = [r[0] for r in next(iter(tables.values()))]
    fine = [sum(t[i][1] for t in tables.values()) / len(tables) for i in range(len(sigmas))]
    coarse = [sum(t[i][2] for t in tables.values()) / len(tables) for i in range(len(sigmas))]
    k = len(sigmas)
    while k > 0 and coarse[k - 1] <= fine[k - 1]:
        k -= 1
    if k == len(sigmas):
        raise MedreconError(f"the coarse expert is worse than the fine prior at every σ up to {sigmas[-1]}: no switch")
    switch = sigmas[0] / 2 if k == 0 else math.sqrt(sigmas[k - 1] * sigmas[k])
    rule = (f"sqrt({sigmas[k - 1] if k else sigmas[0] / 2} * {sigmas[k]}): from σ = {sigmas[k]} up the coarse expert's "
            f"held-out RMSE (mean over {', '.join(tables)}) is at most the fine prior's")
    return round(switch, 4), rule


def print_switch(name: str, tables: dict[str, list[tuple[float, float, float, float]]]) -> None:
    print(f"\n{name}: fine prior against the coarse expert (RMSE on the [0, 1] scale; mean = leave-one-out mean image)")
    print(f"  {'data':<10} {'sigma':>6} {'fine':>8} {'coarse':>8} {'mean':>8} {'better':>7}")
    for data, rows in tables.items():
        for sigma, r_f, r_c, r_m in rows:
            print(f"  {data:<10} {sigma:6.1f} {r_f:8.4f} {r_c:8.4f} {r_m:8.4f} {'coarse' if r_c <= r_f else 'fine':>7}")


@torch.no_grad()
def transfer_table(prior: Callable, images: torch.Tensor, seed: int, batch: int, is_complex: bool,
                   sigmas: tuple[float, ...] = TRANSFER_SIGMAS) -> list[tuple[float, float, float, float, float]]:
    """``[(σ, noisy PSNR, D's PSNR, TV's PSNR, TV weight)]``: the prior against total variation as denoisers.

    Same [0, 1] scale, noise and PSNR as :func:`denoise_table`. TV is the reconstruction baseline's
    regulariser (:func:`medrecon.baselines.tv_prox`, isotropic, complex images jointly) at ``μ = w·σ``,
    with ``w`` the best of :data:`TV_WEIGHTS` on these very images (an oracle choice, which favours TV).
    Run on held-out synthetic images and on the real slices of the quality benchmark, the D − TV gap
    measures how much of the prior's advantage survives on anatomy it never saw."""
    from medrecon.baselines import tv_prox

    s, x01 = to_unit(images, is_complex)
    rows = []
    for k, sigma in enumerate(sigmas):
        gen = torch.Generator(device=images.device).manual_seed(seed * 1000 + 200 + k)
        y01 = x01 + sigma * randn_like(x01, gen)
        d_psnr = unit_psnr(denoise_unit(prior, y01, sigma, s, batch), x01)
        tv = {w: unit_psnr(tv_prox(y01, torch.full((len(y01), 1, 1, 1), w * sigma, device=y01.device),
                                   iterations=TV_ITERATIONS)[0], x01) for w in TV_WEIGHTS}
        w_best = max(tv, key=tv.get)
        rows.append((sigma, unit_psnr(y01, x01), d_psnr, tv[w_best], w_best))
    return rows


def print_transfer(name: str, tables: dict[str, list[tuple[float, float, float, float, float]]]) -> None:
    print(f"\n{name} prior against TV as denoisers (PSNR on the [0, 1] scale; TV weight w = μ/σ, the best of "
          f"{len(TV_WEIGHTS)} on the same images):")
    width = max(8, *(len(data) for data in tables))
    print(f"  {'data':<{width}} {'sigma':>6} {'noisy':>7} {'D':>7} {'TV':>7} {'w':>5} {'D - TV':>7}")
    for data, rows in tables.items():
        for sigma, p_in, p_d, p_tv, w in rows:
            print(f"  {data:<{width}} {sigma:6.2f} {p_in:7.2f} {p_d:7.2f} {p_tv:7.2f} {w:5.2f} {p_d - p_tv:+7.2f}")


def benchmark_images(kind: str, data: str, n: int, size: int, anatomy: Optional[str]) -> tuple[torch.Tensor, str]:
    """The quality benchmark's ground truth (``benchmarks/quality.py``'s ``load_images``: the first ``n/2``
    held-out images of each set — 0–4 at the benchmark's ``n`` = 10 — or ``n`` views of the real pydicom
    slices, view ``i`` of file ``i mod (number of files)``) in the prior's value scale (CT: HU → unit),
    and its source."""
    from medrecon.data import hu_to_unit

    if str(ROOT / "benchmarks") not in sys.path:  # benchmarks/quality.py, imported as tune_fast.py does
        sys.path.insert(0, str(ROOT / "benchmarks"))
    import quality

    x, info = quality.load_images(kind, data, n, size, Path(anatomy) if anatomy else None)
    return (x if kind == "mri" else hu_to_unit(x)), info["source"]


def zoomed(images: torch.Tensor, factor: int) -> torch.Tensor:
    """The central ``1/factor`` of each image enlarged ``factor``× to the same size: the anatomy at
    ``factor`` times its size in pixels, as a real slice resized up from a coarser grid shows it
    (the 64² knee of the benchmark's real MRI at 128²). Bilinear, like the order-1 resize of
    :func:`medrecon.io.simulate.prepare_image`; complex images by real and imaginary parts."""
    import torch.nn.functional as F

    h, w = images.shape[-2:]
    top, left = (h - h // factor) // 2, (w - w // factor) // 2
    crop = images[..., top : top + h // factor, left : left + w // factor]
    parts = torch.view_as_real(crop).movedim(-1, 2).flatten(1, 2) if images.is_complex() else crop
    big = F.interpolate(parts.float(), size=(h, w), mode="bilinear", align_corners=False)
    if images.is_complex():
        return torch.view_as_complex(big.unflatten(1, (-1, 2)).movedim(2, -1).contiguous())
    return big.to(images.dtype)


def transfer_sets(kind: str, n: int, size: int, anatomy: Optional[str]) -> dict[str, tuple[torch.Tensor, str]]:
    """The image sets of ``--transfer``: the benchmark's held-out images; the central half of the
    held-out draws at twice the size (the same generator and seeds give the same slices, sharp: the
    anatomy without background, at twice its scale in pixels); the central half of the benchmark's
    images enlarged 2× by :func:`zoomed` (that anatomy blurred, as a real slice resized up from a
    coarser grid is); all the real slices; and each distinct real file's views alone. Centre against
    held-out measures what the background was worth, zoom against centre what scale and
    interpolation cost, and the per-file rows which real anatomy loses the lead."""
    heldout_x, heldout_source = benchmark_images(kind, "heldout", n, size, anatomy)
    double_x, _ = benchmark_images(kind, "heldout", n, 2 * size, anatomy)
    ood_x, ood_source = benchmark_images(kind, "ood", n, size, anatomy)
    q = size // 2
    sets = {"heldout": (heldout_x, heldout_source),
            "heldout-centre": (double_x[..., q : q + size, q : q + size],
                               f"the central {size}² of the same images drawn at {2 * size}²"),
            "heldout-zoom2": (zoomed(heldout_x, 2), "the held-out images' central half enlarged 2×"),
            "ood": (ood_x, ood_source)}
    import quality  # on the path after benchmark_images

    files = quality.ood_files(kind)  # load_images' files, in its order
    for i, file in enumerate(files):
        sets[f"ood:{file.stem}"] = (ood_x[i :: len(files)], f"the views of {file.name}")
    return sets


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
    ap.add_argument("--n", type=int, default=None,
                    help="held-out images per source for the table (default 16); with --transfer the quality "
                         "benchmark's slices (default 10: its held-out images 0–4 of each set)")
    ap.add_argument("--samples", type=int, default=6, help="unconditional samples per prior")
    ap.add_argument("--churn", type=float, default=40.0,
                    help="EDM S_churn of the sampler (Algorithm 2, S_tmin 0.05, S_tmax 50, S_noise 1.003); 0: deterministic")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--anatomy", default=None, help="MNI152 npz from data_scripts/export_anatomy.py (default: nilearn)")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    ap.add_argument("--transfer", action="store_true",
                    help="only the prior-against-TV denoising table on the quality benchmark's held-out images and "
                         "real slices")
    ap.add_argument("--switch", nargs=2, metavar=("FINE", "COARSE"),
                    help="only measure where a coarse expert beats the fine prior on held-out images (checkpoint "
                         "names in one folder) and print the chosen σ_switch")
    ap.add_argument("--write-pair", metavar="NAME", default=None,
                    help="with --switch: write the pair manifest NAME.json beside the two checkpoints")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'})")
    if args.n is None:
        args.n = 10 if args.transfer else 16
    if args.switch:
        fine_name, coarse_name = args.switch
        fine, coarse = priors.load(fine_name, device=device), priors.load(coarse_name, device=device)
        pair = priors.CoarseToFine(fine, coarse, sigma_switch=1.0)
        kind = "mri" if fine.complex else "ct"
        data = heldout(kind, args.n, args.size, device, args.seed, args.anatomy)
        tables = {source: switch_table(pair, images, args.seed, args.batch) for source, images in data.items()}
        print_switch(f"{fine_name} + {coarse_name} at {args.size}² (pooling factor {pair.factor(next(iter(data.values())))})",
                     tables)
        switch, rule = choose_switch(tables)
        print(f"\nsigma_switch = {switch}  ({rule})")
        if args.write_pair:
            folder = Path(fine.path).parent
            path = priors.save_pair(folder / args.write_pair, Path(fine.path).stem, Path(coarse.path).stem, switch,
                                    switch_rule=rule, switch_measured={
                                        "command": "python benchmarks/priors.py " + " ".join(sys.argv[1:] if argv is None else argv),
                                        "size": args.size, "images_per_source": args.n,
                                        "rmse": {src: [[round(v, 5) for v in r] for r in rows] for src, rows in tables.items()},
                                        "columns": ["sigma", "fine", "coarse", "mean image"]})
            print(f"wrote {path}")
        return 0
    if args.transfer:
        for name in args.priors:
            prior = priors.load(name, device=device)
            kind = "mri" if prior.complex else "ct"
            tables = {}
            for data, (images, source) in transfer_sets(kind, args.n, args.size, args.anatomy).items():
                print(f"[{name}] {data}: {source}")
                tables[data] = transfer_table(prior, images.to(device), args.seed, args.batch, prior.complex)
            print_transfer(name, tables)
        return 0

    all_ok, fig_rows = True, []
    for name in args.priors:
        try:
            prior = priors.load(name, device=device)
        except MedreconError as err:
            print(f"\n[{name}] no checkpoint to benchmark: {err}")
            all_ok = False
            continue
        kind = "mri" if prior.complex else "ct"
        parts = [(name, prior)] if not isinstance(prior, priors.CoarseToFine) else [
            (f"{name}: {prior.manifest['fine']} for σ ≤ {prior.sigma_switch}", prior.fine),
            (f"{name}: coarse expert {prior.manifest['coarse']} above σ = {prior.sigma_switch}", prior.coarse)]
        for label, part in parts:
            m = part.manifest
            print(f"\n[{label}] {m.get('params', '?')} parameters, trained {m['steps']} steps on {m['device']} "
                  f"({m['train_seconds'] / 60:.1f} min), patch {part.image_size}, sigma [{part.sigma_min}, {part.sigma_max}]")
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
        samples = edm_sample(prior, x0, sigmas, churn=args.churn, generator=gen)
        how = f"{args.steps} Heun steps, " + (f"S_churn {args.churn:g}" if args.churn else "deterministic")
        print(f"  {args.samples} samples at {args.size}² ({how}, {2 * args.steps - 1} NFE): "
              f"{time.perf_counter() - t0:.1f} s")
        fig_rows.append((f"{name}: samples ({how})", to_display(samples, prior.complex)))
        for source, images in data.items():
            fig_rows.append((f"held-out {source}", to_display(images[: args.samples], prior.complex)))

    if fig_rows:
        write_figure(fig_rows, args.figure)
        print(f"\nwrote {args.figure}")
    print("\nall targets met" if all_ok else "\nsome targets NOT met (or priors missing)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
