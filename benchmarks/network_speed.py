"""Speed of the shipped priors per evaluation, and of a whole 1000-NFE reconstruction (issue 7).

    python benchmarks/network_speed.py --size 320 --device cuda [--end-to-end] [--compile] [--profile]

Per prior, batch 1 at ``--size``: milliseconds per evaluation for eager fp32, eager bf16 autocast and
:class:`medrecon.priors.FastDenoiser` (CUDA-graph replay in fp32 and in bf16, and with ``--compile``
``torch.compile`` + graphs in bf16), the implied seconds per 1000 evaluations and the largest
relative difference of each mode's output from eager fp32 (``max|D − D_fp32| / max|D_fp32|``).

``--profile`` prints the ten kernels that take the most GPU time in one eager bf16 evaluation (graph
replay runs the same kernels without the launch gaps), to say where the time goes.

``--end-to-end`` reconstructs one generated held-out-style brain slice (MRI single-coil 4×, the
benchmark's noise level) with ``ddnm`` at ``--steps`` (default 1000) NFE through
:func:`medrecon.recon.reconstruct` for each network mode, and prints the wall time, the network's
share of it (evaluations × the mode's ms/eval over the wall time) and the PSNR. The issue-7 target
is ≤ 5 s for 1000 NFE at 320² on an H100 with ≤ 10 % outside the network.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from medrecon import priors  # noqa: E402
from medrecon.noise import randn_like  # noqa: E402

TARGET_S = 5.0  # 1000 NFE at 320² on an H100
TARGET_OVERHEAD = 0.10


def _time(fn, device: torch.device, repeats: int) -> float:
    """Milliseconds per call (CUDA events on a GPU, after 5 warm-up calls)."""
    for _ in range(5):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / repeats
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) * 1000 / repeats


def network_modes(prior, device: torch.device, compile_: bool) -> dict:
    """``{mode: denoiser}`` for the modes this device runs."""
    modes = {"eager fp32": prior}
    if device.type != "cuda":
        return modes

    def bf16(x, s):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return prior(x, s)
    modes["eager bf16"] = bf16
    modes["graphs fp32"] = priors.FastDenoiser(prior, dtype=None)
    modes["graphs bf16"] = priors.FastDenoiser(prior)
    if compile_:
        modes["compiled + graphs bf16"] = priors.FastDenoiser(prior, compile=True)
    return modes


def per_eval(args, device: torch.device) -> tuple[dict, dict]:
    """The per-evaluation table; returns ``{prior: {mode: ms}}`` and ``{prior: {mode: denoiser}}`` (the
    warmed-up, captured or compiled denoisers, reused end to end at the same shape)."""
    out: dict = {}
    dens: dict = {}
    print(f"\n## Per evaluation, {args.size}², batch {args.batch}\n")
    print("| prior | mode | ms / eval | 1000 NFE (s) | max rel. diff vs eager fp32 | note |\n|---|---|---|---|---|---|")
    for pname in args.prior:
        D = priors.load(pname, device=device)
        dtype = torch.complex64 if D.complex else torch.float32
        x = randn_like(torch.zeros(args.batch, 1, args.size, args.size, dtype=dtype, device=device))
        sigma = torch.full((args.batch,), 1.0, device=device)
        out[pname] = {}
        dens[pname] = network_modes(D, device, args.compile)
        with torch.no_grad():
            ref = D(x, sigma)
            for mode, fn in dens[pname].items():
                note = ""
                try:
                    t0 = time.perf_counter()
                    first = fn(x, sigma)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    if mode.startswith("compiled"):
                        note = f"first call (compile + capture) {time.perf_counter() - t0:.1f} s"
                    diff = float((first - ref).abs().max() / ref.abs().max())
                    ms = _time(lambda: fn(x, sigma), device, args.repeats)
                except Exception as err:  # noqa: BLE001 - report and go on: the modes are optimisations
                    print(f"| {pname} | {mode} | failed: {type(err).__name__}: {str(err)[:120]} | | | |", flush=True)
                    continue
                if getattr(fn, "stats", {}).get("capture_error"):
                    note = f"graph capture failed, ran eagerly: {fn.stats['capture_error'][:80]}"
                out[pname][mode] = ms
                print(f"| {pname} | {mode} | {ms:.2f} | {ms:.2f} | {diff:.1e} | {note} |", flush=True)
        if args.profile and device.type == "cuda":
            profile(D, x, sigma)
    return out, dens


def profile(D, x: torch.Tensor, sigma: torch.Tensor) -> None:
    """The ten kernels with the most GPU time in one eager bf16 evaluation."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        D(x, sigma)
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            D(x, sigma)
            torch.cuda.synchronize()
    def gpu_us(e) -> float:  # the attribute's name changed across torch versions
        return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))

    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA" or gpu_us(e) > 0]
    events.sort(key=gpu_us, reverse=True)
    total = sum(gpu_us(e) for e in events)
    print(f"\nProfile of one eager bf16 evaluation of {getattr(D, 'name', 'prior')} {tuple(x.shape)}: "
          f"{total / 1000:.2f} ms of kernels in {sum(e.count for e in events)} launches\n")
    print("| kernel | launches | GPU ms | share |\n|---|---|---|---|")
    for e in events[:10]:
        t = gpu_us(e)
        print(f"| `{e.key[:70]}` | {e.count} | {t / 1000:.3f} | {t / max(total, 1):.0%} |")


def brain_slice(size: int) -> tuple[torch.Tensor, str]:
    """One complex brain slice ``[1, 1, size, size]`` (99.5th percentile of |x| = 1): the first held-out
    256² image (``data_scripts/make_heldout.py``) resampled bicubically, else a fresh held-out draw."""
    path = ROOT / ".devdata" / "heldout" / "heldout_mri-brain_256.npz"
    if path.is_file():
        import numpy as np

        x = torch.from_numpy(np.load(path)["images"][:1]).to(torch.complex64)
        if x.shape[-1] != size:
            resize = lambda t: torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)  # noqa: E731
            x = torch.complex(resize(x.real), resize(x.imag))
        where = f"{path.relative_to(ROOT)}[0], bicubic to {size}²"
    else:
        from medrecon.data import make_source

        x = make_source("mri-brain", "cpu", split="heldout").sample(1, size, torch.Generator().manual_seed(123))
        where = "make_source('mri-brain', split='heldout') seed 123"
    return (x / torch.quantile(x.abs().flatten(), 0.995)).to(torch.complex64), where


def end_to_end(args, device: torch.device, ms_table: dict, dens: dict) -> None:
    """ddnm at ``--steps`` NFE on one 320² single-coil 4× slice for every network mode."""
    import quality

    from medrecon import metrics
    from medrecon.recon import reconstruct

    x, where = brain_slice(args.size)
    problem, _ = quality.make_problem(quality.TASKS["mri-sc-4x"], x, device)
    target = problem.target[0]
    modes = dens.get("mri") or network_modes(priors.load("mri", device=device), device, args.compile)
    print(f"\n## End to end: ddnm, {args.steps} steps, one {args.size}² MRI single-coil 4× slice ({where})\n")
    print("| network | wall s | NFE | network s (NFE × ms/eval) | outside the network | PSNR (dB) | target ≤ 5 s, ≤ 10 % |")
    print("|---|---|---|---|---|---|---|")
    for mode, den in modes.items():
        if mode == "eager bf16":
            continue  # the graph modes are the bf16 candidates
        try:
            reconstruct(problem, "ddnm", prior=den, steps=5, seed=0)  # warm-up: kernels, capture, compile
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            image, stats = reconstruct(problem, "ddnm", prior=den, steps=args.steps, seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
        except Exception as err:  # noqa: BLE001
            print(f"| {mode} | failed: {type(err).__name__}: {str(err)[:120]} | | | | | |", flush=True)
            continue
        nfe = int(stats.get("nfe", args.steps))
        ms = ms_table.get("mri", {}).get(mode)
        net_s = None if ms is None else nfe * ms / 1000
        psnr = metrics.psnr(target, image[0])  # the fastMRI definition, R = target max
        share = "–" if net_s is None else f"{max(wall - net_s, 0.0) / wall:.0%}"
        met = "–"
        if net_s is not None and args.size == 320 and nfe >= 1000:
            fast_ok, lean_ok = wall * 1000 / nfe <= TARGET_S, (wall - net_s) / wall <= TARGET_OVERHEAD
            met = ("met" if fast_ok and lean_ok else "not met: " + ", ".join(
                w for w, bad in ((f"{wall * 1000 / nfe:.2f} s per 1000 NFE", not fast_ok),
                                 ("overhead above 10 %", not lean_ok)) if bad))
        print(f"| {mode} | {wall:.2f} | {nfe} | {'–' if net_s is None else f'{net_s:.2f}'} | {share} | {psnr:.2f} | {met} |",
              flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", nargs="+", default=["mri", "ct"])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile + graphs (slow first call)")
    ap.add_argument("--profile", action="store_true", help="top kernels of one eager bf16 evaluation (CUDA)")
    ap.add_argument("--end-to-end", action="store_true", help="time a whole ddnm reconstruction per network mode")
    ap.add_argument("--steps", type=int, default=1000, help="ddnm steps (= NFE) of --end-to-end")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; size {args.size}², batch {args.batch}")
    table, dens = per_eval(args, device)
    if args.end_to_end:
        end_to_end(args, device, table, dens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
