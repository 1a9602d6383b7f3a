"""Train a score-based prior by denoising score matching (``medrecon train``).

The network is the denoiser ``D(x, σ)`` of the prior interface (DESIGN.md): a UNet behind EDM
preconditioning, wrapped so that complex MRI images enter as two real channels. Training minimises
the EDM objective (Karras et al., "Elucidating the Design Space of Diffusion-Based Generative
Models", NeurIPS 2022, Sec. 5 and Table 1):

    E_{σ, x₀, n} [ λ(σ) · ‖D(x₀ + σ·n, σ) − x₀‖² ],   ln σ ~ N(P_mean, P_std²),
    λ(σ) = (σ² + σ_d²) / (σ · σ_d)²,

with AdamW, a linear learning-rate warm-up, gradient-norm clipping and an exponential moving average
(EMA) of the weights whose half-life is counted in training images (EDM Sec. 5 / App. F.3). The EMA
weights are what is exported with :func:`medrecon.priors.save`.

Training data are generated on the training device inside the loop (``medrecon.data`` sources), so
no DataLoader is involved. The run is resumable: ``<run_dir>/state.pt`` holds the model, the EMA,
the optimiser, the step and every random state (global CPU/CUDA and the per-rank data and noise
generators); rerunning the same command continues from the last saved step and, on the CPU, ends with
bit-identical weights to an uninterrupted run. Under ``torchrun --nproc_per_node=K`` the same loop
runs with DistributedDataParallel (NCCL on CUDA, gloo on the CPU); ``--batch`` is the global batch,
split evenly over ranks, and only rank 0 writes files.

Outputs (rank 0 only, each written to a temporary file and renamed into place):

* ``<run_dir>/state.pt``  full training state, every ``--checkpoint-every`` steps and at the end;
* ``<run_dir>/log.csv``   ``step, loss, lr, grad_norm, images_per_s, seconds`` every ``--log-every``;
* ``<out>.safetensors`` + ``<out>.json``  the EMA weights and manifest, every ``--export-every``
  steps and at the end (also when stopped by ``--time-limit`` or SIGTERM/SIGINT).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import math
import os
import platform
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn

from medrecon import MedreconError
from medrecon.noise import randn_like

__all__ = ["EDMLoss", "TrainResult", "build_parser", "main", "run"]

STATE_FILE = "state.pt"
LOG_FILE = "log.csv"
LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "images_per_s", "seconds")
STATE_VERSION = 1

# Options that define the training problem: a resumed run must use the same values, otherwise the
# result would silently differ from the run that wrote the state.
_RESUME_KEYS = (
    "data", "anatomy", "split", "patch", "batch", "lr", "warmup_steps", "weight_decay", "grad_clip",
    "ema_halflife", "ema_rampup", "model_channels", "channel_mult", "num_blocks", "attn_levels",
    "dropout", "sigma_data", "sigma_min", "sigma_max", "p_mean", "p_std", "seed",
    "crop_from", "crop_fraction", "pool", "init_from",
)


# --------------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EDMLoss:
    """EDM denoising score-matching loss (Karras et al. 2022, Sec. 5, Eq. 2 and Table 1).

    Holds only hyper-parameters. For clean images ``x0`` (``[B, C, H, W]``, real or complex) it
    draws one noise level per sample, ``ln σ ~ N(p_mean, p_std²)``, noise ``n`` with unit variance
    per real component (:func:`medrecon.noise.randn_like`, so a complex pixel gets ``σ²`` in the real
    and in the imaginary part, matching a prior that sees two real channels), and returns the
    unreduced per-sample loss ``λ(σ) · mean((D(x0 + σ n, σ) − x0)²)`` with
    ``λ(σ) = (σ² + σ_d²) / (σ σ_d)²``; the mean runs over all real components of one sample.
    With EDM preconditioning this weighting makes the effective network target unit-variance at
    every σ, so an untrained network starts near loss 1.

    Attributes:
        sigma_data: σ_d, the standard deviation of the data per real component.
        p_mean: mean of ln σ (EDM: −1.2).
        p_std: standard deviation of ln σ (EDM: 1.2).
    """

    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2

    def __call__(
        self,
        denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        x0: torch.Tensor,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Return the per-sample loss ``[B]`` (float32) for clean images ``x0`` ``[B, ...]``."""
        if x0.dim() < 2:
            raise MedreconError(f"EDMLoss expects a batch [B, ...] of images, got shape {tuple(x0.shape)}")
        b = x0.shape[0]
        real_dtype = x0.real.dtype if x0.is_complex() else x0.dtype
        ln_sigma = torch.randn(b, device=x0.device, dtype=real_dtype, generator=generator)
        sigma = (ln_sigma * self.p_std + self.p_mean).exp()
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        noise = randn_like(x0, generator)
        noisy = x0 + sigma.view(b, *([1] * (x0.dim() - 1))) * noise
        err = denoiser(noisy, sigma).to(x0.dtype) - x0
        if err.is_complex():
            err = torch.view_as_real(err)
        return weight * err.square().reshape(b, -1).mean(dim=1)


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------
def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like '1,2,2', got {text!r}") from exc
    return values


def _sigma_data_arg(text: str) -> Any:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m medrecon.train`` / ``medrecon train``."""
    p = argparse.ArgumentParser(
        prog="medrecon train",
        description="Train a score-based prior (EDM denoising score matching) and export it with priors.save.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True,
                   help="a generated source name from medrecon.data (e.g. 'mri', 'ct') or a file-backed "
                        "source 'KIND:PATH_OR_GLOB' (fastmri:, nifti:, dicom:)")
    g.add_argument("--anatomy", default=None, help="npz with the MNI anatomy for generated sources")
    g.add_argument("--split", default="train", help="data split of the source")
    g.add_argument("--patch", type=int, default=128, help="training image size (square patches)")
    g.add_argument("--batch", type=int, default=64, help="global batch size (split over DDP ranks)")
    g.add_argument("--crop-from", type=int, default=0,
                   help="patch training: a fraction of each batch are random --patch crops of images "
                        "generated at this size (0: whole images only)")
    g.add_argument("--crop-fraction", type=float, default=0.5, help="share of crops in each batch with --crop-from")
    g.add_argument("--pool", type=int, default=1,
                   help="train on (pool·patch)² images averaged over pool×pool blocks: the coarse expert "
                        "of priors.CoarseToFine (applied after --crop-from)")
    g.add_argument("--workers", type=int, default=0,
                   help="data-loading workers for file-backed sources (generated sources ignore it)")

    g = p.add_argument_group("model")
    g.add_argument("--model-channels", type=int, default=32,
                   help="UNet width; 32 with the default levels is 5.4M parameters, a 10 MiB fp16 checkpoint")
    g.add_argument("--channel-mult", type=_int_list, default=[1, 2, 3, 4])
    g.add_argument("--num-blocks", type=_int_list, default=[1, 2, 2, 2],
                   help="encoder residual blocks per level: one int, or one per level")
    g.add_argument("--attn-levels", type=_int_list, default=[3],
                   help="resolution levels (0 = full resolution) with self-attention; '' for none")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--init-from", default=None,
                   help="start from an exported prior (name or path; same architecture), e.g. to fine-tune "
                        "on new data; its sigma_data is kept unless --sigma-data is given")
    g.add_argument("--sigma-data", type=_sigma_data_arg, default="auto",
                   help="σ_d of the EDM preconditioning and loss, or 'auto': the RMS per real "
                        "component of 256 training images")
    g.add_argument("--sigma-min", type=float, default=0.002)
    g.add_argument("--sigma-max", type=float, default=80.0)

    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=10000, help="total optimiser steps of the run")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--warmup-steps", type=int, default=200, help="linear learning-rate warm-up")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=1.0, help="max global gradient norm (0: off)")
    g.add_argument("--ema-halflife", type=float, default=20000.0, help="EMA half-life in training images")
    g.add_argument("--ema-rampup", type=float, default=0.05,
                   help="the half-life is at most this fraction of the images seen so far (0: off)")
    g.add_argument("--p-mean", type=float, default=-1.2, help="mean of ln σ during training")
    g.add_argument("--p-std", type=float, default=1.2, help="std of ln σ during training")
    g.add_argument("--seed", type=int, default=0)

    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                   help="bf16 autocast with fp32 master weights; auto = on for CUDA, off on the CPU")
    g.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    g.add_argument("--time-limit", type=float, default=None,
                   help="seconds since start; the run stops early enough to save and export before it")
    g.add_argument("--max-steps-this-run", type=int, default=None,
                   help="stop (saving state) after this many steps of this invocation")

    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="export path without suffix, e.g. checkpoints/mri")
    g.add_argument("--run-dir", default=None, help="state and log directory (default: runs/<name of --out>)")
    g.add_argument("--checkpoint-every", type=int, default=500)
    g.add_argument("--export-every", type=int, default=0, help="export the EMA every N steps (0: only at the end)")
    g.add_argument("--log-every", type=int, default=50)
    g.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    return p


def _check_args(args: argparse.Namespace, world_size: int) -> None:
    positive = ("patch", "batch", "steps", "model_channels", "log_every")
    for name in positive:
        if getattr(args, name) <= 0:
            raise MedreconError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.pool < 1:
        raise MedreconError(f"--pool must be >= 1, got {args.pool}")
    for name in ("checkpoint_every", "export_every", "warmup_steps", "workers"):
        if getattr(args, name) < 0:
            raise MedreconError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not args.channel_mult or min(args.channel_mult) <= 0:
        raise MedreconError(f"--channel-mult must list positive multipliers, e.g. '1,2,2', got {args.channel_mult}")
    if not args.num_blocks or min(args.num_blocks) <= 0 or len(args.num_blocks) not in (1, len(args.channel_mult)):
        raise MedreconError(f"--num-blocks must be one positive int or one per level of --channel-mult "
                            f"({len(args.channel_mult)}), got {args.num_blocks}")
    bad_levels = [a for a in args.attn_levels if not 0 <= a < len(args.channel_mult)]
    if bad_levels:
        raise MedreconError(f"--attn-levels {bad_levels} outside the {len(args.channel_mult)} levels of --channel-mult")
    if args.patch % (2 ** (len(args.channel_mult) - 1)):
        raise MedreconError(
            f"--patch {args.patch} must be divisible by 2^(levels-1) = {2 ** (len(args.channel_mult) - 1)}")
    if not 0 < args.sigma_min < args.sigma_max:
        raise MedreconError(f"need 0 < --sigma-min < --sigma-max, got {args.sigma_min} and {args.sigma_max}")
    if args.sigma_data != "auto" and args.sigma_data <= 0:
        raise MedreconError(f"--sigma-data must be > 0, got {args.sigma_data}")
    if args.lr <= 0 or args.ema_halflife <= 0 or args.p_std <= 0:
        raise MedreconError("--lr, --ema-halflife and --p-std must be > 0")
    if args.batch % world_size:
        raise MedreconError(f"--batch {args.batch} must be divisible by the {world_size} DDP ranks")
    if args.time_limit is not None and args.time_limit <= 0:
        raise MedreconError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    if args.max_steps_this_run is not None and args.max_steps_this_run <= 0:
        raise MedreconError(f"--max-steps-this-run must be > 0, got {args.max_steps_this_run}")


# --------------------------------------------------------------------------------------------------
# Distributed helpers
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _dist_from_env() -> _Dist:
    """Rank layout as set by torchrun (RANK, LOCAL_RANK, WORLD_SIZE); one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    return _Dist(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), world)


def _resolve_device(choice: str, ddp: _Dist) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise MedreconError("--device cuda requested but torch.cuda.is_available() is False")
        index = ddp.local_rank % torch.cuda.device_count()
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def _all_reduce_max(flag: bool, device: torch.device, ddp: _Dist) -> bool:
    if not ddp.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


# --------------------------------------------------------------------------------------------------
# Data and model
# --------------------------------------------------------------------------------------------------
_FILE_KINDS = ("fastmri", "nifti", "dicom")


def make_training_source(spec: str, device: torch.device, anatomy: Optional[str], split: str) -> Any:
    """The training source for ``--data``: a generated source name or ``KIND:PATH`` for files.

    Generated names go to :func:`medrecon.data.synthetic.make_source` (its ``SOURCES`` registry,
    e.g. ``mri-mixed``, ``ct-mixed``); ``fastmri:``, ``nifti:`` and ``dicom:`` specs go to the
    file-backed sources of :mod:`medrecon.data.sources`. Unknown names raise :class:`MedreconError`.
    """
    kind, sep, _ = spec.partition(":")
    if sep and kind in _FILE_KINDS:
        try:
            from medrecon.data import sources as file_sources
        except ImportError as exc:
            raise MedreconError(f"--data {spec!r}: file-backed sources (medrecon.data.sources) are unavailable: {exc}") from exc
        factory = getattr(file_sources, "make_source", None)
        if factory is None:
            raise MedreconError(f"--data {spec!r}: medrecon.data.sources has no make_source registry")
        return factory(spec, device=device, split=split)
    from medrecon.data import synthetic

    try:
        return synthetic.make_source(spec, device, anatomy_path=anatomy, split=split)
    except MedreconError as exc:
        raise MedreconError(f"--data {spec!r}: {exc} (or a file source {', '.join(k + ':PATH' for k in _FILE_KINDS)})") from exc


def _find_scalings(recipe: Any) -> List[Dict[str, Any]]:
    """Every ``scaling``/``value_scaling`` dict inside a (nested) data recipe."""
    found: List[Dict[str, Any]] = []
    if isinstance(recipe, dict):
        for key, value in recipe.items():
            if key in ("scaling", "value_scaling") and isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_find_scalings(value))
    elif isinstance(recipe, (list, tuple)):
        for item in recipe:
            found.extend(_find_scalings(item))
    return found


def manifest_value_scaling(source: Any) -> Dict[str, Any]:
    """The manifest's ``value_scaling`` (schema of :func:`medrecon.priors.fit_scaling`) for a source.

    Taken from ``source.value_scaling`` or the ``scaling`` entries of ``source.recipe`` (all
    components of a mixture must agree). The data module's conventions are translated, keeping
    their fields: ``magnitude_percentile`` (99.5th percentile of |x| → 1, MRI) becomes
    ``{"kind": "percentile", "percentile": p, "target": 1}``, and ``hu_window`` with
    ``hu_min``/``hu_max`` (HU → [0, 1], CT) gets ``low``/``high``.
    """
    direct = getattr(source, "value_scaling", None)
    found = [direct] if isinstance(direct, dict) else _find_scalings(getattr(source, "recipe", None))
    unique = {repr(sorted(f.items())): f for f in found}
    if len(unique) != 1:
        raise MedreconError(
            f"the training source must define exactly one value scaling (recipe 'scaling'), found {list(unique.values())}")
    vs = dict(next(iter(unique.values())))
    kind = vs.get("kind")
    if kind == "magnitude_percentile":
        vs.update(kind="percentile", target=1.0)
    elif kind == "hu_window" and "low" not in vs and "hu_min" in vs:
        vs.update(low=float(vs["hu_min"]), high=float(vs["hu_max"]))
    elif kind == "identity":
        vs["kind"] = "none"
    if vs["kind"] not in ("percentile", "hu_window", "scale", "none"):
        raise MedreconError(f"value scaling {vs} of the training source has no manifest equivalent "
                            "(expected percentile, hu_window, scale or none)")
    return vs


def estimate_sigma_data(source: Any, patch: int, device: torch.device, seed: int, n: int = 256) -> float:
    """σ_d for EDM preconditioning: the RMS per real component of ``n`` source images (drawn with a
    generator of their own, so the training data stream is unchanged), rounded to 3 decimals."""
    gen = torch.Generator(device=device).manual_seed(_seed_for(seed, 0, 4))
    total, count = 0.0, 0
    for start in range(0, n, 64):
        x = source.sample(min(64, n - start), patch, gen)
        x = torch.view_as_real(x) if x.is_complex() else x
        total += float(x.double().square().sum())
        count += x.numel()
    return max(round(math.sqrt(total / count), 3), 1e-3)


def _net_channels(source: Any) -> int:
    """Real channels the network sees: complex images enter as (real, imaginary) channel pairs."""
    channels = int(source.channels)
    return 2 * channels if bool(source.complex) and channels == 1 else channels


def unet_config(args: argparse.Namespace, source: Any) -> Dict[str, Any]:
    """The ``priors.UNet(**config)`` keyword arguments of this run."""
    return {
        "in_channels": _net_channels(source),
        "out_channels": _net_channels(source),
        "model_channels": int(args.model_channels),
        "channel_mult": [int(m) for m in args.channel_mult],
        "num_blocks": (int(args.num_blocks[0]) if len(args.num_blocks) == 1 else [int(n) for n in args.num_blocks]),
        "attn_levels": [int(a) for a in args.attn_levels],
        "dropout": float(args.dropout),
    }


def build_denoiser(config: Dict[str, Any], sigma_data: float, sigma_min: float, sigma_max: float,
                   complex_images: bool) -> nn.Module:
    """UNet → EDMPrecond (→ ComplexAsChannels for complex images): the denoiser ``D(x, σ)``."""
    from medrecon import priors

    net = priors.UNet(**config)
    model: nn.Module = priors.EDMPrecond(net, sigma_data=sigma_data, sigma_min=sigma_min, sigma_max=sigma_max)
    if complex_images:
        model = priors.ComplexAsChannels(model)
    return model


# --------------------------------------------------------------------------------------------------
# Training state
# --------------------------------------------------------------------------------------------------
def lr_at(step: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then constant (EDM)."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def ema_beta(images_seen: int, batch: int, halflife_images: float, rampup: float) -> float:
    """EMA decay per step for a half-life counted in images (EDM App. F.3): β = 0.5^(batch / h),
    with h = min(halflife, rampup · images_seen) early in training when ``rampup > 0``."""
    h = halflife_images
    if rampup > 0:
        h = min(h, rampup * images_seen)
    return 0.5 ** (batch / max(h, 1e-8))


@torch.no_grad()
def _ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    ema_p = [p for p in ema.parameters()]
    src_p = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_p, src_p, 1.0 - beta)
    for eb, b in zip(ema.buffers(), model.buffers()):
        eb.copy_(b)


def _rng_snapshot(device: torch.device, generators: Dict[str, torch.Generator]) -> Dict[str, torch.Tensor]:
    snap = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        snap["torch_cuda"] = torch.cuda.get_rng_state(device)
    for name, gen in generators.items():
        snap[name] = gen.get_state().cpu()
    return snap


def _rng_restore(snap: Dict[str, torch.Tensor], device: torch.device, generators: Dict[str, torch.Generator]) -> None:
    torch.set_rng_state(snap["torch_cpu"])
    if device.type == "cuda" and "torch_cuda" in snap:
        torch.cuda.set_rng_state(snap["torch_cuda"], device)
    for name, gen in generators.items():
        gen.set_state(snap[name])


def _gather_rng(snap: Dict[str, torch.Tensor], ddp: _Dist) -> List[Dict[str, torch.Tensor]]:
    if not ddp.enabled:
        return [snap]
    gathered: List[Any] = [None] * ddp.world_size
    dist.all_gather_object(gathered, {k: v.cpu() for k, v in snap.items()})
    return gathered


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _seed_for(seed: int, rank: int, stream: int) -> int:
    """Distinct, reproducible seeds per (run seed, rank, stream)."""
    return (int(seed) * 1_000_003 + rank * 7919 + stream * 104_729 + 12345) % (2**63 - 1)


def _problem(args: argparse.Namespace) -> Dict[str, Any]:
    return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in vars(args).items() if k in _RESUME_KEYS}


def _check_resume(saved: Dict[str, Any], current: Dict[str, Any], path: Path) -> None:
    saved = {"pool": 1, **saved}  # states written before --pool existed trained at full resolution
    diff = [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}" for k in _RESUME_KEYS if saved.get(k) != current.get(k)]
    if diff:
        raise MedreconError(
            f"{path} was written by a run with other settings ({'; '.join(diff)}). "
            "Use the same options to resume, or a new --run-dir to start afresh.")


# --------------------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------------------
class _CsvLog:
    """Append-only CSV log; on resume the rows after the resumed step are dropped (they were
    logged by the killed run after its last saved state and will be recomputed)."""

    def __init__(self, path: Path, resume_step: Optional[int]) -> None:
        self.path = path
        rows: List[List[str]] = []
        if resume_step is not None and path.exists():
            with open(path, newline="") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                if header is not None and tuple(header) == LOG_COLUMNS:
                    rows = [r for r in reader if r and int(r[0]) <= resume_step]
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LOG_COLUMNS)
            w.writerows(rows)
        os.replace(tmp, path)
        self._file = open(path, "a", newline="")
        self._writer = csv.writer(self._file)

    def write(self, step: int, loss: float, lr: float, grad_norm: float, images_per_s: float, seconds: float) -> None:
        self._writer.writerow([step, f"{loss:.6g}", f"{lr:.6g}", f"{grad_norm:.6g}", f"{images_per_s:.6g}", f"{seconds:.3f}"])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# --------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    """What :func:`run` leaves behind (for callers and tests)."""

    model: nn.Module          # the trained (raw) weights, unwrapped from DDP/compile
    ema: nn.Module            # the EMA weights that are exported
    step: int                 # optimiser steps done in total
    stopped_by: str           # "steps" | "max_steps_this_run" | "time_limit" | "signal"
    export_path: Optional[Path]
    run_dir: Path
    manifest: Dict[str, Any]


class _StopFlag:
    def __init__(self) -> None:
        self.signalled = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Turn SIGTERM/SIGINT into a clean stop (only possible in the main thread)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            self.signalled = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(args: argparse.Namespace, *, source: Any = None, command: Optional[str] = None) -> TrainResult:
    """Train with parsed ``args`` (see :func:`build_parser`); resumes from ``<run_dir>/state.pt``.

    ``source`` replaces the ``--data`` source (an object with ``complex``, ``channels``, ``recipe``
    and ``sample(n, size, generator)``), e.g. for tests; ``command`` is the command recorded in the
    manifest (default: ``sys.argv``). Under torchrun the process group is created (and destroyed)
    here.
    """
    t_start = time.monotonic()
    ddp = _dist_from_env()
    _check_args(args, ddp.world_size)
    device = _resolve_device(args.device, ddp)
    created_group = False
    if ddp.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                rank=ddp.rank, world_size=ddp.world_size)
        created_group = True
    try:
        # The global RNG (dropout) is forked, seeded per rank from --seed, and handed back to the
        # caller untouched afterwards; a resumed run overwrites it with the saved state.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_seed_for(args.seed, ddp.rank, 3))
            return _run(args, ddp, device, source, command, t_start)
    finally:
        if created_group:
            dist.destroy_process_group()


def _run(args: argparse.Namespace, ddp: _Dist, device: torch.device, source: Any, command: Optional[str],
         t_start: float) -> TrainResult:
    from medrecon import priors

    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if (ddp.main and not args.quiet) else (lambda msg: None)
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / out.name
    state_path = run_dir / STATE_FILE
    if ddp.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        out.parent.mkdir(parents=True, exist_ok=True)

    if device.type == "cuda":
        # TF32 for the fp32 parts and cuDNN autotuning for the fixed training shapes.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")

    # Data: one generator per rank for images and one for the loss noise, both on the device.
    if source is None:
        source = make_training_source(args.data, device, args.anatomy, args.split)
        if args.crop_from:
            from medrecon.data.synthetic import Crops

            source = Crops(source, args.crop_from, args.crop_fraction)
        if args.pool > 1:
            from medrecon.data.synthetic import Pooled

            source = Pooled(source, args.pool)
    data_gen = torch.Generator(device=device).manual_seed(_seed_for(args.seed, ddp.rank, 0))
    noise_gen = torch.Generator(device=device).manual_seed(_seed_for(args.seed, ddp.rank, 1))
    generators = {"data": data_gen, "noise": noise_gen}
    value_scaling = manifest_value_scaling(source)  # fail before training, not at export
    init = priors.load(args.init_from, device="cpu") if args.init_from else None
    if args.sigma_data != "auto":
        sigma_data = float(args.sigma_data)
    elif init is not None:
        sigma_data = float(init.sigma_data)
    else:
        sigma_data = estimate_sigma_data(source, args.patch, device, args.seed)

    # Model (initialised from the seed without touching the global RNG), EMA, optimiser.
    config = unet_config(args, source)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed_for(args.seed, 0, 2))
        model = build_denoiser(config, sigma_data, args.sigma_min, args.sigma_max, bool(source.complex)).to(device)
    config = next(m for m in model.modules() if isinstance(m, priors.UNet)).config  # the full UNet config
    if init is not None:
        if init.manifest["config"] != config or bool(init.complex) != bool(source.complex):
            raise MedreconError(f"--init-from {args.init_from}: its network {init.manifest['config']} "
                                f"(complex={init.complex}) differs from this run's {config} (complex={source.complex})")
        precond = next(m for m in model.modules() if isinstance(m, priors.EDMPrecond))
        precond.load_state_dict(init.precond.state_dict())
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=args.weight_decay, fused=device.type == "cuda")
    loss_fn = EDMLoss(sigma_data=sigma_data, p_mean=args.p_mean, p_std=args.p_std)
    n_params = sum(p.numel() for p in params)

    # Resume: every rank loads the same file; rank-specific random states are indexed by rank.
    step, train_seconds = 0, 0.0
    problem = _problem(args)
    problem["sigma_data"] = sigma_data
    resumed = state_path.exists()
    if resumed:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("version") != STATE_VERSION:
            raise MedreconError(f"{state_path}: state version {state.get('version')!r}, expected {STATE_VERSION}")
        _check_resume(state["problem"], problem, state_path)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        step, train_seconds = int(state["step"]), float(state["train_seconds"])
        rng = state["rng"]
        if len(rng) == ddp.world_size:
            _rng_restore(rng[ddp.rank], device, generators)
        else:  # another world size: reproducible but not identical to an uninterrupted run
            say(f"warning: {state_path} was written by {len(rng)} rank(s), now {ddp.world_size}; reseeding generators")
            for i, gen in enumerate(generators.values()):
                gen.manual_seed(_seed_for(args.seed + step, ddp.rank, i))
        say(f"resuming {state_path} at step {step}")
        del state

    train_model: nn.Module = model
    if ddp.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        train_model = torch.compile(train_model)

    per_rank = args.batch // ddp.world_size
    log = _CsvLog(run_dir / LOG_FILE, step if resumed else None) if ddp.main else None
    if command is None:
        launcher = (f"torchrun --nproc_per_node={ddp.world_size} -m medrecon.train" if ddp.enabled
                    else "python -m medrecon.train")
        command = " ".join([launcher, *(shlex.quote(a) for a in sys.argv[1:])])
    cmd = command

    def manifest() -> Dict[str, Any]:
        seconds = round(train_seconds + (time.monotonic() - t_loop), 1)
        # arch/config/precond/channels/sha256 are derived (and checked) by priors.save.
        return {
            "name": out.name,
            "arch": "unet",
            "config": config,
            "precond": {"sigma_data": sigma_data, "sigma_min": args.sigma_min, "sigma_max": args.sigma_max},
            "complex": bool(source.complex),
            "image_size": int(args.patch),
            "value_scaling": value_scaling,
            "data_recipe": getattr(source, "recipe", None),
            "training_command": cmd,
            "steps": step,
            "device": _device_name(device),
            "train_seconds": seconds,
            "torch": torch.__version__,
            "training": {
                "images": step * args.batch,
                "batch": args.batch,
                "world_size": ddp.world_size,
                "optimizer": {"type": "AdamW", "lr": args.lr, "betas": [0.9, 0.999], "eps": 1e-8,
                              "weight_decay": args.weight_decay, "warmup_steps": args.warmup_steps,
                              "grad_clip": args.grad_clip},
                "ema": {"halflife_images": args.ema_halflife, "rampup": args.ema_rampup,
                        "decay_per_step_final": ema_beta(step * args.batch, args.batch, args.ema_halflife, args.ema_rampup)},
                "loss": {"type": "edm", "p_mean": args.p_mean, "p_std": args.p_std, "sigma_data": sigma_data,
                         "sigma_data_source": "estimated" if args.sigma_data == "auto" else "given"},
                "amp": "bf16" if amp else "off",
                "compile": bool(args.compile),
                "seed": args.seed,
                "parameters": n_params,
                "stopped_by": stopped_by,
                "init_from": None if init is None else {
                    "path": str(init.path), "sha256": init.manifest["sha256"], "steps": init.manifest["steps"],
                    "device": init.manifest.get("device"), "train_seconds": init.manifest.get("train_seconds"),
                    # the whole lineage: what the initial weights were themselves fine-tuned from
                    "init_from": (init.manifest.get("training") or {}).get("init_from")},
                "crops": {"crop_from": args.crop_from, "fraction": args.crop_fraction} if args.crop_from else None,
                "pool": args.pool,
            },
        }

    def save_state() -> None:
        rng = _gather_rng(_rng_snapshot(device, generators), ddp)
        if ddp.main:
            _write_state(rng)
        if ddp.enabled:
            dist.barrier()  # nobody reads state.pt (e.g. a rerun) before rank 0 has written it

    def _write_state(rng: List[Dict[str, torch.Tensor]]) -> None:
        _atomic_torch_save({
            "version": STATE_VERSION,
            "step": step,
            "train_seconds": train_seconds + (time.monotonic() - t_loop),
            "problem": problem,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng,
        }, state_path)

    def export() -> Path:
        priors.save(out, ema, manifest(), dtype=torch.float16)
        return out

    say(f"training {out.name}: {n_params / 1e6:.2f}M parameters, {device}: {_device_name(device)}, "
        f"batch {args.batch} x {args.patch}², amp {'bf16' if amp else 'off'}, {ddp.world_size} rank(s)")

    # ---- loop ----------------------------------------------------------------------------------
    stop = _StopFlag()
    t_loop = time.monotonic()
    start_step = step
    stopped_by = "running"
    loss_acc = torch.zeros((), device=device)
    gnorm_acc = torch.zeros((), device=device)
    n_acc = 0
    t_log, step_log = time.monotonic(), step
    # Seconds for one state save + export: a guess (16 bytes/parameter at 100 MB/s) until measured.
    save_cost = 0.5 + 16 * n_params / 100e6
    save_measured = False
    step_time = 0.0           # running estimate of one step's wall time
    check_every = 1 if not ddp.enabled else max(1, min(args.log_every, 10))
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    bar = None
    if ddp.main and not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.steps, initial=step, desc=out.name, dynamic_ncols=True, file=sys.stderr)
    exported: Optional[Path] = None
    model.train()

    with stop.installed():
        while step < args.steps:
            if args.max_steps_this_run is not None and step - start_step >= args.max_steps_this_run:
                stopped_by = "max_steps_this_run"  # deterministic: every rank stops here
                break
            # Time and signals differ between ranks: decide together so that all leave at one step.
            if (step - start_step) % check_every == 0:
                want, reason = stop.signalled, "signal"
                if args.time_limit is not None:
                    reserve = 2.0 * save_cost + (check_every + 2) * step_time + 2.0
                    if time.monotonic() - t_start + reserve >= args.time_limit:
                        want, reason = True, "time_limit"
                if _all_reduce_max(want, device, ddp):
                    stopped_by = reason if want else "peer"
                    break
            t0 = time.monotonic()
            lr = lr_at(step, args.lr, args.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x0 = source.sample(per_rank, args.patch, data_gen)
            with autocast:
                loss = loss_fn(train_model, x0, noise_gen).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for p in params:  # a rare inf/nan gradient must not poison the weights (as EDM does)
                if p.grad is not None:
                    torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
            if args.grad_clip > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
            else:
                gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            optimizer.step()
            step += 1
            _ema_update(ema, model, ema_beta(step * args.batch, args.batch, args.ema_halflife, args.ema_rampup))
            loss_acc += loss.detach().float()
            gnorm_acc += gnorm.detach().float()
            n_acc += 1
            if bar is not None:
                bar.update(1)
            step_time = 0.9 * step_time + 0.1 * (time.monotonic() - t0) if step_time else time.monotonic() - t0

            if step % args.log_every == 0 or step == args.steps:
                stats = torch.stack([loss_acc, gnorm_acc]) / max(n_acc, 1)
                if ddp.enabled:
                    dist.all_reduce(stats)
                    stats /= ddp.world_size
                mean_loss, mean_gnorm = stats.tolist()
                now = time.monotonic()
                ips = (step - step_log) * args.batch / max(now - t_log, 1e-9)
                if log is not None:
                    log.write(step, mean_loss, lr, mean_gnorm, ips, train_seconds + now - t_loop)
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.0f}")
                if not math.isfinite(mean_loss):
                    say(f"warning: non-finite loss {mean_loss} at step {step}")
                loss_acc.zero_()
                gnorm_acc.zero_()
                n_acc = 0
                t_log, step_log = now, step
            ts = time.monotonic()
            did = False
            if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps:
                save_state()
                did = True
            if ddp.main and args.export_every and step % args.export_every == 0 and step < args.steps:
                exported = export()
                did = True
            if did:
                cost = time.monotonic() - ts
                save_cost = max(save_cost, cost) if save_measured else cost
                save_measured = True

    if stopped_by == "running":
        stopped_by = "steps"
    if bar is not None:
        bar.close()
    # ---- final save and export ------------------------------------------------------------------
    save_state()
    if ddp.main:
        exported = export()
    final_manifest = manifest()
    train_seconds += time.monotonic() - t_loop
    if log is not None:
        log.close()
    say(f"stopped at step {step} ({stopped_by}) after {time.monotonic() - t_start:.0f} s; "
        f"state {state_path}, weights {exported}.safetensors")
    return TrainResult(model=model, ema=ema, step=step, stopped_by=stopped_by,
                       export_path=exported if ddp.main else None, run_dir=run_dir, manifest=final_manifest)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m medrecon.train`` and ``torchrun ... -m medrecon.train``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = None
    if argv is not None:
        world = _dist_from_env().world_size
        prefix = [f"torchrun --nproc_per_node={world}"] if world > 1 else []
        command = " ".join(prefix + [shlex.quote(a) for a in ["medrecon", "train", *argv]])
    try:
        run(args, command=command)
    except MedreconError as exc:
        print(f"medrecon train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
