"""Time one denoiser evaluation of a shipped prior (eager fp32, eager bf16 autocast, CUDA-graph bf16).

    python benchmarks/network_speed.py --prior mri --size 320 --device cuda

Prints milliseconds per evaluation at batch 1 and the implied time of a 1000-NFE reconstruction
(the issue-7 target is ≤ 5 s at 320² on an H100).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from medrecon import priors  # noqa: E402
from medrecon.noise import randn_like  # noqa: E402


def _time(fn, device: torch.device, repeats: int) -> float:
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", nargs="+", default=["mri", "ct"])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=100)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; size {args.size}², batch {args.batch}")
    print("| prior | mode | ms / eval | 1000 NFE (s) |\n|---|---|---|---|")
    for pname in args.prior:
        D = priors.load(pname, device=device)
        dtype = torch.complex64 if D.complex else torch.float32
        x = randn_like(torch.zeros(args.batch, 1, args.size, args.size, dtype=dtype, device=device))
        sigma = torch.full((args.batch,), 1.0, device=device)
        modes = {"eager fp32": lambda: D(x, sigma)}
        if device.type == "cuda":
            def bf16():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return D(x, sigma)
            modes["eager bf16"] = bf16
        with torch.no_grad():
            for mode, fn in modes.items():
                ms = _time(fn, device, args.repeats)
                print(f"| {pname} | {mode} | {ms:.2f} | {ms:.2f} |")
            if device.type == "cuda":
                try:
                    static_x, static_s = x.clone(), sigma.clone()
                    stream = torch.cuda.Stream()
                    stream.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(stream), torch.autocast("cuda", dtype=torch.bfloat16):
                        for _ in range(3):
                            D(static_x, static_s)
                    torch.cuda.current_stream().wait_stream(stream)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph), torch.autocast("cuda", dtype=torch.bfloat16):
                        out = D(static_x, static_s)
                    ms = _time(graph.replay, device, args.repeats)
                    print(f"| {pname} | CUDA graph bf16 | {ms:.2f} | {ms:.2f} |")
                    del out
                except Exception as err:  # report and go on: graphs are an optimisation
                    print(f"| {pname} | CUDA graph bf16 | failed: {type(err).__name__}: {err} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
