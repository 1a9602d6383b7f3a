"""GPU benchmark of medrecon's Triton kernels (issue 6): correctness first, then timings.

One command::

    .venv/bin/python benchmarks/gpu.py                 # full run (≈ 1.5-2 min on an H100, Triton compiles included)
    .venv/bin/python benchmarks/gpu.py --quick         # tiny smoke run
    .venv/bin/python benchmarks/gpu.py --out PATH.md   # where the markdown table goes

It prints the card's name and its measured device-to-device copy bandwidth, checks every kernel
against the torch reference path on the GPU, then times (CUDA events, median of N after warm-up):

* CT parallel beam 256²/180 views B1, 512²/720 B1 and B16 (and fan beam), forward and adjoint:
  our Triton kernels, our torch path, and peers when importable (``torchtomo`` with its ``cuda``
  and ``triton`` backends, ``deepinv``'s ``Tomography``, ``torch_radon``; absent peers are skipped),
  with the peak memory each call allocates beyond its inputs (``torch.cuda.max_memory_allocated``).
* MRI: one multi-coil data-consistency step (15 coils × 640×368, batch 8): the fused kernels vs
  plain torch ops.

Peers on a device machine without network: download their wheels here (``pip download --no-deps
-d .whl torchtomo deepinv torchmetrics einops natsort lightning-utilities`` plus the
``torchvision`` wheel matching the device's torch, e.g. ``torchvision==0.26.0 --python-version 3.12
--platform manylinux_2_28_x86_64 --only-binary=:all:`` for torch 2.11), carry ``.whl`` and run
``pip install --no-deps --target /tmp/peers .whl/*.whl && PYTHONPATH=/tmp/peers:$PWD python3
benchmarks/gpu.py`` there.

The issue's targets are printed beside the measured numbers with ratios, and the report is written
as markdown to ``--out`` (default ``benchmarks/RESULTS-gpu.md``) after every section, so a run cut
short by a ``timeout`` still leaves what it measured. Every section runs in its own ``try``: a failure
prints its traceback and the run goes on. After ``TIME_BUDGET_S`` seconds the slow reference and peer
timings are skipped. The exit status is 1 when a correctness check failed. Without CUDA the script runs the
same code on the CPU (wall-clock timings; the Triton rows only under ``TRITON_INTERPRET=1``), which
is meant for ``--quick`` smoke tests only.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout without install

import physics  # noqa: E402
from physics import kernels  # noqa: E402
from physics.kernels import mri_dc  # noqa: E402

# Targets and peer numbers quoted by issue 6 (H100, CUDA events).
TARGET_CT_MS = 3.0  # CT 512²/720/B16 forward and adjoint, exact matched pair
TARGET_CT_SIZE = (512, 720, 16)
TIME_BUDGET_S = 100.0  # past this, slow reference/peer measurements are skipped (runs under `timeout 140`)
_T0 = time.perf_counter()


def over_budget() -> bool:
    return time.perf_counter() - _T0 > TIME_BUDGET_S
TARGET_MRI_SPEEDUP = 2.0  # fused DC step vs plain torch ops at 15×640×368/B8
ISSUE_PEERS = {  # (forward ms, adjoint ms) at 512²/720/B16
    "torchtomo cuda": (4.8, 5.1),
    "torchtomo triton": (11.0, 51.8),
    "deepinv Tomography": (212.0, 619.0),
}
ISSUE_MRI_TORCH_MS = 3.4


# ---------------------------------------------------------------------------------------------------
# Timing helpers
# ---------------------------------------------------------------------------------------------------
@dataclass
class Timing:
    median_ms: float
    runs: int
    peak_mib: Optional[float] = None


@dataclass
class Report:
    out: Optional[Path] = None
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def write(self) -> None:
        """Write the markdown so far (atomically), so a run cut short still leaves its table."""
        if self.out is None:
            return
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.out.with_suffix(self.out.suffix + ".tmp")
            tmp.write_text("\n".join(self.lines) + "\n")
            os.replace(tmp, self.out)
        except Exception:  # noqa: BLE001
            traceback.print_exc()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, repeats: int = 10,
              budget_s: float = 3.0) -> Timing:
    """Median time of ``fn()`` in ms (CUDA events on CUDA, wall clock elsewhere) after ``warmup``
    calls (the first also measures the peak memory one call allocates beyond what was allocated
    before it, CUDA only). Slow calls get fewer repeats: about ``budget_s`` seconds per measurement."""
    peak = None
    t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        del out
    else:
        fn()
    first = time.perf_counter() - t0
    if first < budget_s / 4:
        for _ in range(max(warmup - 1, 0)):
            fn()
        _sync(device)
    t1 = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - t1, 1e-6)
    repeats = int(max(1, min(repeats, budget_s / one)))
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t))
    return Timing(statistics.median(times), repeats, peak)


def copy_bandwidth_gbs(device: torch.device, mib: int) -> float:
    """Device-to-device copy bandwidth (read + write bytes per second, GB/s)."""
    n = mib * 2**20 // 4
    a = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    b = torch.empty_like(a)
    t = time_call(lambda: b.copy_(a), device, warmup=3, repeats=20)
    return 2 * a.numel() * 4 / (t.median_ms * 1e-3) / 1e9


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def fmt(v: Optional[float], digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}g}" if v < 1000 else f"{v:.0f}"


def section(report: Report, title: str, fn: Callable[[], None]) -> None:
    report.say("")
    report.say(f"## {title}")
    report.say("")
    t0 = time.perf_counter()
    try:
        fn()
    except Exception:  # noqa: BLE001 - a failing section must not stop the others
        tb = traceback.format_exc()
        print(tb, flush=True)
        report.failures.append(f"{title}: {tb.strip().splitlines()[-1]}")
        report.say(f"**section failed**: `{tb.strip().splitlines()[-1]}` (traceback printed on stdout)")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    report.say(f"_({time.perf_counter() - t0:.1f} s; {time.perf_counter() - _T0:.0f} s since start)_")
    report.write()


# ---------------------------------------------------------------------------------------------------
# MRI
# ---------------------------------------------------------------------------------------------------
def _mri_problem(batch: int, coils: int, h: int, w: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)

    def crandn(*shape):
        return torch.complex(torch.randn(shape, generator=g, device=device), torch.randn(shape, generator=g, device=device))

    x = crandn(batch, 1, h, w)
    maps = crandn(batch, coils, h, w)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()
    y, z = crandn(batch, coils, h, w), crandn(batch, coils, h, w)
    mask = (torch.rand((batch, 1, 1, w), generator=g, device=device) < 0.25).float()
    mask[..., w // 2 - 12: w // 2 + 12] = 1.0
    y = y * mask
    return x, maps, y, z, mask


def mri_correctness(report: Report, device: torch.device, sizes: list[tuple[int, int, int, int]], triton_ok: bool) -> None:
    report.say("| case | quantity | rel. error (fused vs torch) | tolerance | ok |")
    report.say("| --- | --- | --- | --- | --- |")
    if not triton_ok:
        report.say("| – | Triton path unavailable on this device | – | – | skipped |")
        return
    for (b, c, h, w) in sizes:
        x, maps, y, z, mask = _mri_problem(b, c, h, w, device, seed=1)
        lam, sigma = torch.linspace(0.5, 1.0, b, device=device), torch.full((b,), 0.3, device=device)
        checks = {
            "sense_expand": (mri_dc.sense_expand(x, maps, checkerboard_sign=True, backend="triton"),
                             mri_dc.sense_expand_reference(x, maps, checkerboard_sign=True)),
            "sense_combine": (mri_dc.sense_combine(y, maps, checkerboard_sign=True, backend="triton"),
                              mri_dc.sense_combine_reference(y, maps, checkerboard_sign=True)),
            "kspace_blend": (mri_dc.kspace_blend(y, z, mask, lam=lam, sigma=sigma, noise=y, backend="triton"),
                             mri_dc.kspace_blend_reference(y, z, mask, lam=lam, sigma=sigma, noise=y)),
            "sense_forward": (mri_dc.sense_forward(x, maps, mask, backend="triton"),
                              mri_dc.sense_forward_reference(x, maps, mask)),
            "sense_adjoint": (mri_dc.sense_adjoint(y, maps, mask, backend="triton"),
                              mri_dc.sense_adjoint_reference(y, maps, mask)),
            "dc_step": (mri_dc.dc_step(x, y, mask, maps=maps, lam=lam, sigma=sigma, noise=z, backend="triton"),
                        mri_dc.dc_step_reference(x, y, mask, maps=maps, lam=lam, sigma=sigma, noise=z)),
        }
        for name, (ours, ref) in checks.items():
            e = rel_err(ours, ref)
            ok = e <= 1e-5
            if not ok:
                report.failures.append(f"MRI {name} {b}x{c}x{h}x{w}: rel err {e:.3g}")
            report.say(f"| {c} coils {h}×{w} B{b} | {name} | {e:.2e} | 1e-5 | {'yes' if ok else '**NO**'} |")
        ax = mri_dc.sense_forward(x, maps, mask, backend="triton")
        ahy = mri_dc.sense_adjoint(y, maps, mask, backend="triton")
        dot = float(((physics.inner(ax, y) - physics.inner(x, ahy)).abs()
                     / (physics.inner(ax, ax) * physics.inner(y, y)).sqrt()).max())
        report.say(f"| {c} coils {h}×{w} B{b} | ⟨Ax,y⟩ vs ⟨x,Aᴴy⟩ | {dot:.2e} | 1e-5 | {'yes' if dot < 1e-5 else '**NO**'} |")
        if dot >= 1e-5:
            report.failures.append(f"MRI dot test {b}x{c}x{h}x{w}: {dot:.3g}")


def mri_timing(report: Report, device: torch.device, size: tuple[int, int, int, int], bandwidth: Optional[float],
               triton_ok: bool, repeats: int) -> None:
    b, c, h, w = size
    x, maps, y, z, mask = _mri_problem(b, c, h, w, device)
    lam, sigma = 1.0, 0.1
    nbytes = (x.numel() + maps.numel() + y.numel()) * 8 + mask.numel() * 4
    floor = None if bandwidth is None else nbytes / (bandwidth * 1e9) * 1e3 * 2  # read-once bytes; copy bw counts r+w
    report.say(f"One DC step x' = Sᴴ F⁻¹[(1−λM) F S x + λ M (y + σz)], {c} coils × {h}×{w}, batch {b}, complex64. "
               f"Inputs {nbytes / 2**20:.0f} MiB" + ("" if floor is None else f"; byte floor for reading them once ≈ {floor:.3f} ms") + ".")
    report.say("")
    report.say("| operation | implementation | median ms | runs | peak MiB | speed-up vs plain torch | target |")
    report.say("| --- | --- | --- | --- | --- | --- | --- |")
    cases = {
        "DC step (noisy λ-blend)": (
            lambda: mri_dc.dc_step(x, y, mask, maps=maps, lam=lam, sigma=sigma, noise=z, backend="triton"),
            lambda: mri_dc.dc_step_reference(x, y, mask, maps=maps, lam=lam, sigma=sigma, noise=z)),
        "SENSE forward M·F·S": (lambda: mri_dc.sense_forward(x, maps, mask, backend="triton"),
                                lambda: mri_dc.sense_forward_reference(x, maps, mask)),
        "SENSE adjoint Sᴴ·Fᴴ·M": (lambda: mri_dc.sense_adjoint(y, maps, mask, backend="triton"),
                                  lambda: mri_dc.sense_adjoint_reference(y, maps, mask)),
    }
    for name, (fused, plain) in cases.items():
        tp = time_call(plain, device, repeats=repeats)
        target = f"≥ {TARGET_MRI_SPEEDUP:g}× (issue: plain torch {ISSUE_MRI_TORCH_MS} ms on H100)" if name.startswith("DC") else ""
        report.say(f"| {name} | plain torch ops | {fmt(tp.median_ms)} | {tp.runs} | {fmt(tp.peak_mib)} | 1 | {target} |")
        if not triton_ok:
            report.say(f"| {name} | fused Triton | – | – | – | Triton unavailable | |")
            continue
        tf = time_call(fused, device, repeats=repeats)
        speed = tp.median_ms / tf.median_ms
        verdict = ""
        if name.startswith("DC"):
            verdict = "met" if speed >= TARGET_MRI_SPEEDUP else "**not met**"
        report.say(f"| {name} | fused Triton | {fmt(tf.median_ms)} | {tf.runs} | {fmt(tf.peak_mib)} | "
                   f"{speed:.2f}× | {verdict} |")


# ---------------------------------------------------------------------------------------------------
# CT
# ---------------------------------------------------------------------------------------------------
CT_IMPORT_ERROR: Optional[str] = None
try:
    from physics.kernels import ct_project
    from physics import ct as physics_ct
except Exception as err:  # noqa: BLE001 - reported in the CT sections
    CT_IMPORT_ERROR = f"{type(err).__name__}: {err}"
    ct_project = physics_ct = None


def _ct_geometry(kind: str, n: int, views: int):
    """Parallel: views over [0, π); fan: equiangular, full circle, source 2N and detector N from the centre."""
    if kind == "parallel":
        return physics_ct.ParallelBeam(n, torch.arange(views, dtype=torch.float64) * (math.pi / views))
    return physics_ct.FanBeam(n, torch.arange(views, dtype=torch.float64) * (2 * math.pi / views),
                              source_distance=2.0 * n, detector_distance=1.0 * n)


def _ct_data(geo, batch: int, device: torch.device, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)
    n = geo.image_size
    x = torch.rand((batch, 1, n, n), generator=g, device=device)
    y = torch.rand((batch, 1, geo.views, geo.detectors), generator=g, device=device)
    return x, y


def ct_correctness(report: Report, device: torch.device, sizes: list[tuple[int, int, int]], triton_ok: bool) -> None:
    if ct_project is None:
        raise RuntimeError(f"CT kernels unavailable: {CT_IMPORT_ERROR}")
    report.say("| geometry | size | forward rel. error | adjoint rel. error | dot test ⟨Ax,y⟩ vs ⟨x,Aᵀy⟩ | tolerance | ok |")
    report.say("| --- | --- | --- | --- | --- | --- | --- |")
    if not triton_ok:
        report.say("| – | Triton path unavailable on this device | – | – | – | – | skipped |")
        return
    for kind in ("parallel", "fan"):
        for (n, views, batch) in sizes:
            geo = _ct_geometry(kind, n, views)
            x, y = _ct_data(geo, batch, device, seed=1)
            ax = ct_project.radon_forward(x, geo, backend="triton")
            aty = ct_project.radon_adjoint(y, geo, backend="triton")
            ef = rel_err(ax, ct_project.radon_forward(x, geo, backend="torch"))
            ea = rel_err(aty, ct_project.radon_adjoint(y, geo, backend="torch"))
            dot = float(((physics.inner(ax, y) - physics.inner(x, aty)).abs()
                         / (physics.inner(ax, ax) * physics.inner(y, y)).sqrt()).max())
            ok = max(ef, ea, dot) <= 1e-5
            if not ok:
                report.failures.append(f"CT {kind} {n}²/{views}/B{batch}: fwd {ef:.2e} adj {ea:.2e} dot {dot:.2e}")
            report.say(f"| {kind} | {n}²/{views} views/B{batch} | {ef:.2e} | {ea:.2e} | {dot:.2e} | 1e-5 | "
                       f"{'yes' if ok else '**NO**'} |")
            # every launch the projector may choose on a GPU (layouts × blocks) against the torch path
            proj = ct_project._projector(geo)
            ref_f = ct_project.radon_forward(x, geo, backend="torch")
            ref_a = ct_project.radon_adjoint(y, geo, backend="torch")
            for cf, ca in _launch_pairs(geo, batch):
                ef, ea = rel_err(proj.forward(x, cf), ref_f), rel_err(proj.adjoint(y, ca), ref_a)
                ok = max(ef, ea) <= 1e-5
                if not ok:
                    report.failures.append(f"CT {kind} {n}²/{views}/B{batch} {_cfg_name(cf, ca)}: fwd {ef:.2e} adj {ea:.2e}")
                report.say(f"| {kind} | {n}²/{views} views/B{batch}, launch {_cfg_name(cf, ca)} | {ef:.2e} | "
                           f"{ea:.2e} | – | 1e-5 | {'yes' if ok else '**NO**'} |")


def _launch_pairs(geo, batch: int) -> list[tuple]:
    """The (forward, adjoint) launches the projector of ``geo`` chooses from at ``batch``."""
    shared = geo.batch is None
    return list(zip(ct_project.candidate_configs("forward", batch, shared),
                    ct_project.candidate_configs("adjoint", batch, shared)))


def _cfg_name(cf, ca) -> str:
    """A forward and an adjoint launch (:class:`physics.kernels.ct_project.LaunchConfig`) in a few words."""
    fwd = f"{cf.layout}, {cf.items} items/program, {cf.block[0]} rays"
    adj = f"{ca.block[0]}×{ca.block[1]} px" if (ca.layout, ca.items) == (cf.layout, cf.items) else \
        f"adjoint {ca.layout}, {ca.items} items/program, {ca.block[0]}×{ca.block[1]} px"
    return f"{fwd} / {adj}"


def _peer_projectors(n: int, views: int, detectors: int, device: torch.device) -> dict[str, tuple]:
    """``{name: (forward, adjoint)}`` for the peers that import (parallel beam, ``views`` over 180°).
    Absent packages are skipped silently; present ones that fail to build are reported by name."""
    peers: dict[str, tuple] = {}
    problems: list[str] = []
    angles = torch.arange(views, dtype=torch.float32, device=device) * (math.pi / views)
    try:
        import inspect

        import torchtomo  # noqa: F401

        for backend in ("cuda", "triton"):
            try:
                kwargs = dict(img_size=n, n_angles=views, n_det=detectors)
                params = inspect.signature(torchtomo.ParallelBeam).parameters
                if "backend" in params:
                    kwargs["backend"] = backend
                if "circle" in params:
                    kwargs["circle"] = False  # no mask: the same work as ours
                proj = torchtomo.ParallelBeam(**kwargs)
                proj = proj.to(device) if hasattr(proj, "to") else proj
                if getattr(proj, "backend", backend) != backend:
                    raise RuntimeError(f"fell back to its {proj.backend!r} backend")
                adj_name = next(a for a in ("adjoint", "A_adjoint", "transpose", "backproject", "backprojection",
                                            "back_project") if hasattr(proj, a))
                fwd_fn = proj.forward
                if "backend" not in kwargs and "backend" in inspect.signature(fwd_fn).parameters:
                    peers[f"torchtomo {backend}"] = (lambda x, p=proj, b=backend: p.forward(x, backend=b),
                                                     lambda y, p=proj, b=backend, a=adj_name: getattr(p, a)(y, backend=b))
                else:
                    peers[f"torchtomo {backend}"] = (fwd_fn, getattr(proj, adj_name))
            except Exception as err:  # noqa: BLE001
                problems.append(f"torchtomo {backend}: {type(err).__name__}: {err}")
    except ImportError:
        pass
    try:
        from deepinv.physics import Tomography

        try:
            phys = Tomography(angles=views, img_width=n, circle=False, device=device)
            peers["deepinv Tomography"] = (phys.A, phys.A_adjoint)
        except Exception as err:  # noqa: BLE001
            problems.append(f"deepinv Tomography: {type(err).__name__}: {err}")
    except ImportError:
        pass
    try:
        import torch_radon

        try:
            r = torch_radon.Radon(n, angles, det_count=detectors)
            peers["torch_radon"] = (lambda x, r=r: r.forward(x[:, 0]), lambda y, r=r: r.backprojection(y[:, 0]))
        except Exception as err:  # noqa: BLE001
            problems.append(f"torch_radon: {type(err).__name__}: {err}")
    except ImportError:
        pass
    for p in problems:
        print(f"peer unavailable: {p}", flush=True)
    return peers


def ct_timing(report: Report, device: torch.device, sizes: list[tuple[int, int, int]], kind: str, triton_ok: bool,
              repeats: int, *, peers: bool, reference_max_batch: Optional[int] = None) -> None:
    if ct_project is None:
        raise RuntimeError(f"CT kernels unavailable: {CT_IMPORT_ERROR}")
    report.say("| size | implementation | forward ms | adjoint ms | fwd peak MiB | adj peak MiB | "
               "fwd speed-up vs torch path | adj speed-up vs torch path | target (512²/720/B16) |")
    report.say("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for (n, views, batch) in sizes:
        label = f"{n}²/{views}/B{batch}"
        try:
            geo = _ct_geometry(kind, n, views)
            x, y = _ct_data(geo, batch, device)
            impls: dict[str, tuple] = {}
            skip_ref = reference_max_batch is not None and batch > reference_max_batch
            if skip_ref:
                report.say(f"| {label} | our torch path | not timed (kept for B ≤ {reference_max_batch} to save time) | | | | | | |")
            elif not over_budget():
                impls["our torch path"] = (lambda t: ct_project.radon_forward(t, geo, backend="torch"),
                                           lambda t: ct_project.radon_adjoint(t, geo, backend="torch"))
            else:
                report.say(f"| {label} | our torch path | skipped (time budget) | | | | | | |")
            if triton_ok:
                impls["ours (Triton)"] = (lambda t: ct_project.radon_forward(t, geo, backend="triton"),
                                          lambda t: ct_project.radon_adjoint(t, geo, backend="triton"))
                proj = ct_project._projector(geo)
                configs = _launch_pairs(geo, batch)
                if len(configs) > 1:  # each launch the tuner chooses from, timed on its own
                    for cf, ca in configs:
                        impls[f"ours, launch {_cfg_name(cf, ca)}"] = (lambda t, c=cf: proj.forward(t, c),
                                                                      lambda t, c=ca: proj.adjoint(t, c))
            if peers and device.type == "cuda" and not over_budget():
                impls.update(_peer_projectors(n, views, geo.detectors, device))
            ref: dict[str, float] = {}
            for name, (fwd, adj) in impls.items():
                try:
                    if name.startswith("ours"):
                        fwd(x), adj(y)  # compile outside the timings
                    yin, shown = y, name
                    if not name.startswith("our"):
                        yin = fwd(x)  # a peer's own sinogram shape
                        if tuple(yin.shape[-2:]) != (views, geo.detectors):
                            shown = f"{name} (its sinogram {yin.shape[-2]}×{yin.shape[-1]}, ours {views}×{geo.detectors})"
                    tf = time_call(lambda: fwd(x), device, repeats=repeats, budget_s=2.0)
                    ta = time_call(lambda: adj(yin), device, repeats=repeats, budget_s=2.0)
                except Exception as err:  # noqa: BLE001
                    report.say(f"| {label} | {name} | failed: `{type(err).__name__}: {str(err)[:80]}` | | | | | | |")
                    torch.cuda.empty_cache() if device.type == "cuda" else None
                    continue
                if name == "our torch path":
                    ref = {"fwd": tf.median_ms, "adj": ta.median_ms}
                target = ""
                if (n, views, batch) == TARGET_CT_SIZE and name.startswith("ours") and kind == "parallel":
                    met = tf.median_ms <= TARGET_CT_MS and ta.median_ms <= TARGET_CT_MS
                    target = (f"≤ {TARGET_CT_MS:g} / ≤ {TARGET_CT_MS:g} ms: {'met' if met else '**not met**'} "
                              f"({TARGET_CT_MS / tf.median_ms:.2f}× / {TARGET_CT_MS / ta.median_ms:.2f}× of target)")
                impls[name] = (fwd, adj, tf, ta)
                report.say(f"| {label} | {shown} | {fmt(tf.median_ms)} | {fmt(ta.median_ms)} | {fmt(tf.peak_mib)} | "
                           f"{fmt(ta.peak_mib)} | – | – | {target} |" if name == "our torch path" else
                           f"| {label} | {shown} | {fmt(tf.median_ms)} | {fmt(ta.median_ms)} | {fmt(tf.peak_mib)} | "
                           f"{fmt(ta.peak_mib)} | {_ratio(ref.get('fwd'), tf.median_ms)} | "
                           f"{_ratio(ref.get('adj'), ta.median_ms)} | {target} |")
            if triton_ok and device.type == "cuda" and "ours (Triton)" in impls:
                tuned = [ct_project._projector(geo)._tuned.get((d, batch, x.device)) for d in ("forward", "adjoint")]
                if all(tuned):
                    report.say(f"| {label} | ours (Triton) chose | launch {_cfg_name(*tuned)} | | | | | | |")
            if "ours (Triton)" in impls and len(impls["ours (Triton)"]) == 4:
                _, _, tf, ta = impls["ours (Triton)"]
                for name, val in impls.items():
                    if name.startswith("our") or len(val) != 4:
                        continue
                    report.say(f"| {label} | ours vs {name} | | | | | {val[2].median_ms / tf.median_ms:.2f}× | "
                               f"{val[3].median_ms / ta.median_ms:.2f}× | |")
            if (n, views, batch) == TARGET_CT_SIZE and kind == "parallel":
                for name, (f_ms, a_ms) in ISSUE_PEERS.items():
                    report.say(f"| {label} | {name} (issue, H100) | {f_ms:g} | {a_ms:g} | – | – | – | – | reference |")
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()


def _ratio(reference_ms: Optional[float], ms: float) -> str:
    """Torch-path time over ours (measured with the torch path first, so available on each row)."""
    return "–" if reference_ms is None else f"{reference_ms / ms:.2f}×"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "RESULTS-gpu.md"),
                        help="markdown output path (default benchmarks/RESULTS-gpu.md)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 20, quick 3)")
    args = parser.parse_args(argv)

    t_start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    repeats = args.repeats or (3 if args.quick else 20)
    report = Report(out=Path(args.out))
    probe = torch.zeros(1, device=device)
    triton_ok = kernels.triton_available() and (device.type == "cuda" or kernels.interpreter_active())
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})"
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report.say(f"# medrecon GPU kernels benchmark{' (quick)' if args.quick else ''}")
    report.say("")
    report.say(f"- card: **{card}**")
    report.say(f"- date: {date}")
    try:
        import triton
        tv = triton.__version__
    except Exception:  # noqa: BLE001
        tv = "not importable"
    report.say(f"- torch {torch.__version__}, CUDA {torch.version.cuda}, triton {tv}, python {platform.python_version()}")
    report.say(f"- Triton path: {'yes' if triton_ok else 'no'}" + (" (interpreter)" if device.type != "cuda" and triton_ok else ""))
    bandwidth: Optional[float] = None
    try:
        bandwidth = copy_bandwidth_gbs(device, 64 if args.quick else 1024)
        report.say(f"- measured copy bandwidth (read+write): **{bandwidth:.0f} GB/s**")
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        report.say("- copy bandwidth: measurement failed (traceback on stdout)")
    if device.type != "cuda":
        report.say("- no CUDA device: wall-clock timings on the CPU, for smoke-testing this script only")
    del probe

    if args.quick:
        mri_checks, mri_size = [(2, 4, 16, 12)], (2, 4, 32, 24)
        ct_checks = [(32, 12, 2)]
        ct_sizes = [(32, 12, 1), (48, 20, 2)]
    else:
        mri_checks, mri_size = [(2, 4, 64, 48), (8, 15, 640, 368)], (8, 15, 640, 368)
        ct_checks = [(64, 12, 2), (256, 180, 2)]
        ct_sizes = [(256, 180, 1), (512, 720, 1), (512, 720, 16)]

    section(report, "Correctness on the device: MRI fused kernels vs torch path",
            lambda: mri_correctness(report, device, mri_checks, triton_ok))
    section(report, "Correctness on the device: CT kernels vs torch path",
            lambda: ct_correctness(report, device, ct_checks, triton_ok))
    section(report, "CT timings (parallel beam)",
            lambda: ct_timing(report, device, ct_sizes, "parallel", triton_ok, repeats, peers=True))
    section(report, "MRI timings (one multi-coil DC step)",
            lambda: mri_timing(report, device, mri_size, bandwidth, triton_ok, repeats))
    section(report, "CT timings (fan beam, equiangular, source 2N, detector N)",
            lambda: ct_timing(report, device, [ct_sizes[0], ct_sizes[-1]], "fan", triton_ok, repeats, peers=False,
                              reference_max_batch=1))

    report.say("")
    report.say("## Summary")
    report.say("")
    if report.failures:
        report.say("Problems:")
        for f in report.failures:
            report.say(f"- {f}")
    else:
        report.say("All correctness checks passed and every section ran.")
    report.say("")
    report.say(f"_Total time {time.perf_counter() - t_start:.0f} s. Command: `python benchmarks/gpu.py"
               f"{' --quick' if args.quick else ''}`._")
    report.write()
    print(f"\nwrote {report.out}", flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
