"""The ``medrecon`` command.

    medrecon simulate mri --image brain.dcm --out brain_4x.h5      # a fastMRI-layout test file
    medrecon recon brain_4x.h5 --method tv --out recon/            # classical reconstruction
    medrecon recon brain_4x.h5 --method dds --prior mri --out recon_dds/   # diffusion
    medrecon evaluate --reference brain_4x.h5 --recon recon/brain_4x.h5    # NMSE / PSNR / SSIM

Every failure caused by the input prints one line ``medrecon: error: <file>: <problem>`` on
stderr and exits with status 2, leaving no output file behind.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from medrecon import MedreconError, __version__

__all__ = ["main", "build_parser", "parse_slices"]


def parse_slices(text: Optional[str]):
    """``"3"``, ``"2,5,7"`` or ``"10:20"`` (Python slice, end exclusive) → a slice spec for the readers."""
    if text is None:
        return None
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            return slice(*parts)
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--slices takes N, N,M,… or START:STOP, received {text!r}") from None


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _err(message: str) -> None:
    print(f"medrecon: error: {message}", file=sys.stderr)


def _progress(quiet: bool, total: Optional[int], desc: str):
    """A tqdm bar on stderr (disabled by ``--quiet``)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=quiet, leave=False, file=sys.stderr, dynamic_ncols=True)


def _step_callback(bar, per_sample: Optional[int] = None) -> Callable[[dict], None]:
    """Progress-bar updater; with ``samples=K`` each info names its sample and the bar spans all K runs."""

    def cb(info: dict) -> None:
        offset = int(info.get("sample", 0)) * (per_sample or 0)
        bar.update(offset + int(info.get("i", bar.n - offset)) + 1 - bar.n)

    return cb


def _default_steps(method: str, steps: Optional[int], preset: str = "official") -> Optional[int]:
    if steps is not None:
        return steps
    from medrecon import baselines

    if method in baselines.BASELINES:
        return None
    try:
        from medrecon import samplers

        return samplers.preset_settings(method, preset).get("steps") if method in samplers.METHODS else None
    except ImportError:
        return None


# -- recon ----------------------------------------------------------------------------------------
def _print_entry(entry: dict, quiet: bool) -> None:
    if quiet:
        return
    m = entry.get("metrics")
    msg = f"{Path(entry['input']).name}: {entry['method']} → {entry['output']} ({entry['seconds']:.1f} s)"
    if m:
        msg += f"  NMSE {m['nmse']:.4g}  PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}"
    print(msg)


def cmd_recon(args: argparse.Namespace) -> int:
    from medrecon import baselines, recon

    options: dict[str, Any] = {}
    if args.weight is not None:
        options["weight"] = args.weight
    if args.iterations is not None:
        options["iterations"] = args.iterations
    if args.preset != "official":
        options["preset"] = args.preset
    if args.samples != 1:
        if args.samples < 1 or args.method in baselines.BASELINES:
            raise MedreconError(f"--samples must be a positive integer for a diffusion method (the mean of that many "
                                f"posterior samples), received {args.samples} with --method {args.method}")
        options["samples"] = args.samples
    if args.adapt:
        if args.method in baselines.BASELINES:
            raise MedreconError(f"--adapt adapts a diffusion prior; {args.method} is a classical method")
        options["adapt"] = True
    if (args.warm_start is None) != (args.t0 is None):
        raise MedreconError("--warm-start and --t0 go together (a classical method to start from, and the fraction "
                            f"of the noise schedule run from it), received {args.warm_start!r} and {args.t0!r}")
    if args.warm_start is not None:
        if args.method in baselines.BASELINES:
            raise MedreconError(f"--warm-start starts a diffusion sampler; {args.method} is a classical method")
        if args.warm_start not in baselines.BASELINES:
            raise MedreconError(f"--warm-start must name a classical method ({', '.join(baselines.BASELINES)}), "
                                f"received {args.warm_start!r}")
        if not 0 < args.t0 <= 1:
            raise MedreconError(f"--t0 must lie in (0, 1], received {args.t0}")
        options.update(warm_start=args.warm_start, t0=args.t0)
    if args.method not in baselines.BASELINES:
        try:
            from medrecon import samplers
        except ImportError as err:
            raise MedreconError(f"diffusion methods are unavailable ({err}); classical: {', '.join(baselines.BASELINES)}") from None
        if args.method not in samplers.available():
            raise MedreconError(
                f"unknown method {args.method!r}; classical: {', '.join(baselines.BASELINES)}; "
                f"diffusion: {', '.join(samplers.available())} (see `medrecon methods`)"
            )
        if args.prior is not None and not Path(str(args.prior)).exists():
            from medrecon import priors

            if str(args.prior) not in priors.available() and not Path(str(args.prior) + ".safetensors").exists():
                raise MedreconError(f"unknown prior {args.prior!r}; shipped: {', '.join(priors.available()) or 'none'} (or give a path)")
    device = recon.resolve_device(args.device)
    per_sample = _default_steps(args.method, args.steps, args.preset)
    if per_sample and args.t0 is not None:  # the warm start runs the last t0 of the schedule
        from medrecon.samplers.schedules import truncated_steps

        per_sample = truncated_steps(per_sample, args.t0)
    steps = per_sample * args.samples if per_sample else per_sample  # the progress bar spans all samples
    common = dict(prior=args.prior, steps=args.steps, seed=args.seed, device=device, slices=args.slices,
                  acceleration=args.acceleration, center_fraction=args.center_fraction, mask_type=args.mask_type,
                  noise_std=args.noise_std, options=options, fast_network=args.fast_network, dose=args.dose)
    src = Path(args.input)
    if not src.exists():
        raise MedreconError(f"{src}: no such file or folder")
    if src.is_dir():
        bar_total = steps or options.get("iterations")
        errors: list[str] = []

        def files_bar(files):
            from tqdm.auto import tqdm

            return tqdm(files, desc="files", disable=args.quiet, file=sys.stderr, dynamic_ncols=True)

        bar = _progress(args.quiet or bar_total is None, bar_total, args.method)
        common["callback"] = _step_callback(bar, per_sample)

        def on_error(f: Path, msg: str) -> None:
            errors.append(msg)
            _err(msg)

        log = recon.reconstruct_directory(src, args.out, args.method, progress=files_bar, on_error=on_error,
                                          suffix=args.format if args.format != ".h5" else "", **common)
        bar.close()
        done = [e for e in log["files"].values() if e.get("status") == "done"]
        if not args.quiet:
            for e in done:
                if "seconds" in e:
                    _print_entry(e, False)
            n_skip = sum(e.get("status") == "skipped" for e in log["files"].values())
            print(f"{len(done)} reconstructed, {n_skip} skipped (already done), {len(errors)} failed; "
                  f"log: {Path(args.out) / recon.LOG_NAME}")
        return 2 if errors else 0
    out = Path(args.out)
    bar = _progress(args.quiet or steps is None, steps, args.method)
    common["callback"] = _step_callback(bar, per_sample)
    entry = recon.reconstruct_file(src, out, args.method, **common)
    bar.close()
    if args.log:
        recon._write_json(Path(args.log), {"files": {src.name: {"status": "done", **entry}}})
    _print_entry(entry, args.quiet)
    return 0


# -- simulate -------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from medrecon.io import simulate

    slices = args.slices
    if isinstance(slices, slice):
        raise MedreconError("simulate takes --slices as N or N,M,… (indices of the image volume)")
    if args.modality == "mri":
        path = simulate.simulate_mri(args.image, args.out, coils=args.coils, acceleration=args.acceleration,
                                     center_fraction=args.center_fraction, mask_type=args.mask_type, noise=args.noise,
                                     phase=args.phase, seed=args.seed, slices=slices, size=args.size)
    else:
        path = simulate.simulate_ct(args.image, args.out, views=args.views, geometry=args.geometry,
                                    detector=args.detector, dose=args.dose, noise=args.noise, units=args.units,
                                    seed=args.seed, slices=slices, size=args.size)
    if not args.quiet:
        print(f"wrote {path}")
    return 0


# -- evaluate -------------------------------------------------------------------------------------
def _load_volume(path: Path, reference: bool):
    """A magnitude/HU volume ``[S, H, W]`` plus ``(kind, slices)`` from any file medrecon reads or writes."""
    import numpy as np

    from medrecon.io import read_image, read_nifti
    from medrecon.io.fastmri import TARGET_KEYS, open_h5

    name = path.name.lower()
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return read_nifti(path)[0], "image", None
    if name.endswith(".npy") or name.endswith(".png") or name.endswith(".dcm") or path.is_dir():
        return read_image(path).volume, "image", None
    with open_h5(path) as hf:
        slices = json.loads(hf.attrs["slices"]) if "slices" in hf.attrs else None
        for key, kind in [*((k, "mri") for k in TARGET_KEYS), ("ground_truth", "ct"), ("reconstruction", "recon")]:
            if key in hf and not (key == "ground_truth" and "kspace" in hf):
                units = hf.attrs.get("units", "")
                kind = "ct" if kind == "recon" and units == "HU" else kind
                return np.asarray(hf[key][()], dtype=np.float32), kind, slices
        keys = ", ".join(sorted(hf.keys())) or "nothing"
    what = "a ground truth (reconstruction_esc/_rss or ground_truth)" if reference else "a 'reconstruction' dataset"
    raise MedreconError(f"{path}: no {what} (found: {keys})")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from medrecon import metrics
    from medrecon.io import center_crop

    ref, ref_kind, _ = _load_volume(Path(args.reference), True)
    rec, rec_kind, rec_slices = _load_volume(Path(args.recon), False)
    if rec_slices is not None and ref.shape[0] != rec.shape[0]:
        ref = ref[rec_slices]
    if ref.shape[0] != rec.shape[0]:
        raise MedreconError(f"{args.recon}: {rec.shape[0]} slices but the reference {args.reference} has {ref.shape[0]}")
    if ref.shape[1:] != rec.shape[1:]:
        size = (min(ref.shape[1], rec.shape[1]), min(ref.shape[2], rec.shape[2]))
        ref, rec = center_crop(ref, size), center_crop(rec, size)
    if ref_kind == "ct" or rec_kind == "ct":
        lo = float(ref.min())
        result = metrics.evaluate(ref - lo, rec - lo, data_range=float(ref.max()) - lo)
        note = "data range = max − min of the reference (HU)"
    else:
        result = metrics.evaluate(ref, rec)
        note = "data range = max of the reference volume (fastMRI)"
    if args.json:
        print(json.dumps({"reference": str(args.reference), "recon": str(args.recon), "slices": int(ref.shape[0]),
                          **result, "data_range": note}))
    else:
        print(f"{'metric':<8}{'value':>12}")
        print(f"{'NMSE':<8}{result['nmse']:>12.5g}")
        print(f"{'PSNR':<8}{result['psnr']:>12.3f}  dB")
        print(f"{'SSIM':<8}{result['ssim']:>12.4f}")
        print(f"({ref.shape[0]} slice(s) of {ref.shape[1]}x{ref.shape[2]}; {note})")
    return 0


# -- listings, delegation -------------------------------------------------------------------------
def cmd_methods(args: argparse.Namespace) -> int:
    from medrecon import baselines

    print("Classical methods (no prior needed):\n")
    print("| method | MRI | CT | what it does |\n| --- | --- | --- | --- |")
    for name, b in baselines.BASELINES.items():
        print(f"| `{name}` | {'yes' if 'mri' in b.modalities else 'no'} | {'yes' if 'ct' in b.modalities else 'no'} | {b.summary} |")
    print("\nDiffusion methods (need --prior):\n")
    try:
        from medrecon import samplers

        print(samplers.support_table())
    except ImportError as err:
        print(f"(unavailable: medrecon.samplers cannot be imported: {err})")
    return 0


def cmd_priors(args: argparse.Namespace) -> int:
    from medrecon import priors

    names = priors.available()
    folder = priors.checkpoints_dir()
    if not names:
        print(f"No checkpoints in {folder}. Train one with `medrecon train --help`.")
        return 0
    print(f"Checkpoints in {folder}:\n")
    print("| name | data | channels | image size | value scaling | steps | trained on | MiB |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        mpath = folder / f"{name}.json"
        try:
            m = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as err:
            print(f"| {name} | unreadable manifest ({err}) | | | | | | |")
            continue
        if m.get("arch") == "coarse_to_fine":  # a pair: the two checkpoints it joins are listed on their own rows
            size = sum((folder / f"{m.get(r)}.safetensors").stat().st_size for r in ("fine", "coarse")
                       if (folder / f"{m.get(r)}.safetensors").is_file()) / 2**20
            print(f"| {name} | `{m.get('fine')}` for σ ≤ {m.get('sigma_switch')}, above it the coarse expert "
                  f"`{m.get('coarse')}` | | | | | | {size:.1f} |")
            continue
        vs = m.get("value_scaling", {})
        vs_text = vs.get("kind", "?") + (f" p{vs['percentile']}" if "percentile" in vs else "") + (
            f" [{vs['low']}, {vs['high']}] HU" if "low" in vs else "")
        size = (folder / f"{name}.safetensors").stat().st_size / 2**20
        data = "complex MRI" if m.get("complex") else "real (CT)"
        print(f"| {name} | {data} | {m.get('channels')} | {m.get('image_size')} | {vs_text} | {m.get('steps')} | "
              f"{m.get('device')} ({m.get('train_seconds')} s) | {size:.1f} |")
    return 0


def cmd_train(argv: Sequence[str]) -> int:
    from medrecon import train

    return int(train.main(list(argv)) or 0)


def cmd_demo(args: argparse.Namespace) -> int:
    from medrecon import demo

    demo.run_demo(args.out, steps=args.steps, quiet=args.quiet, diffusion=not args.no_diffusion)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    script = root / "benchmarks" / "quality.py"
    if not script.is_file():
        raise MedreconError(f"{script}: the quality benchmark is not in this checkout (see benchmarks/ for the others)")
    return subprocess.call([sys.executable, str(script), *args.rest])


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="medrecon", formatter_class=_Formatter,
        description=__doc__.split("\n\n")[0] + "\n\nReconstruct undersampled MRI and sparse-view CT with "
        "classical methods or diffusion priors.\nStart with `medrecon demo --out demo_out`, or simulate a "
        "file from any image:\n\n" + "\n".join(__doc__.split("\n\n")[1].splitlines()[:4]),
    )
    p.add_argument("--version", action="version", version=f"medrecon {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("recon", help="reconstruct a fastMRI/sinogram file or a folder of them", formatter_class=_Formatter,
                       description="Reconstruct INPUT (a fastMRI .h5, a sinogram .h5, or a folder of them) with a "
                       "classical method or a diffusion sampler + prior. A folder is processed file by file; "
                       "finished outputs are skipped on a rerun and a JSON log is kept in OUT. Under "
                       "`torchrun --nproc_per_node=K -m medrecon recon DIR --out DIR` the files are split across ranks.")
    r.add_argument("input", help="a .h5 file or a folder of .h5 files")
    r.add_argument("--method", default="zero-filled",
                   help="classical: zero-filled, sense, l1-wavelet, tv, fbp; diffusion: see `medrecon methods`")
    r.add_argument("--prior", default=None, help="shipped prior name (see `medrecon priors`) or a checkpoint path; "
                   "default: mri or ct by data type")
    r.add_argument("--steps", type=int, default=None, help="sampler steps (default: the method's official count)")
    r.add_argument("--preset", default="official", choices=["official", "tuned"],
                   help="diffusion: the method's published setting, or its validated ≤ 100-NFE preset "
                        "('tuned': e.g. ddnm on the prior's EDM noise schedule; see `medrecon methods`)")
    r.add_argument("--samples", type=int, default=1,
                   help="diffusion: average this many posterior samples (a Monte-Carlo posterior mean: higher PSNR, "
                        "K× the time) and write their per-pixel standard deviation (h5: 'reconstruction_std'; "
                        "NIfTI: <name>_std.nii.gz)")
    r.add_argument("--adapt", action="store_true",
                   help="diffusion: adapt the prior to each slice's measurement while sampling (Steerable Conditional "
                        "Diffusion, official setting: 16 Adam iterations on low-rank network updates at every 20th step "
                        "and the last 4, i.e. 128 extra forward and backward passes in 100 steps; benchmarks/RESULTS.md "
                        "says what it gains)")
    r.add_argument("--warm-start", default=None, metavar="BASELINE",
                   help="diffusion: start from this classical reconstruction (tv, l1-wavelet, fbp, …) plus noise at "
                        "σ(t0) and run only the last --t0 of the schedule (CCDF, Chung et al. 2022): t0 × the NFE; "
                        "benchmarks/RESULTS.md says what it gains")
    r.add_argument("--t0", type=float, default=None, help="with --warm-start: the fraction of the schedule run, in (0, 1]")
    r.add_argument("--seed", type=int, default=0, help="random seed of the sampler")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    r.add_argument("--out", required=True, help="output .h5 (leaderboard layout) or .nii/.nii.gz file, or a folder")
    r.add_argument("--slices", type=parse_slices, default=None, help="slices to reconstruct: N, N,M,… or START:STOP")
    r.add_argument("--acceleration", type=float, default=None,
                   help="undersample fully sampled k-space by this factor (default 4 when the input is fully sampled)")
    r.add_argument("--center-fraction", type=float, default=None, help="fraction of centre columns kept (default 0.08)")
    r.add_argument("--mask-type", default="equispaced_fraction",
                   choices=["equispaced_fraction", "equispaced", "random", "gaussian_1d"], help="mask for fully sampled input")
    r.add_argument("--noise-std", type=float, default=None,
                   help="measurement noise std in the file's units (default: the file's noise_std attribute, else 0)")
    r.add_argument("--dose", type=float, default=None,
                   help="CT: incident photons per detector bin of the post-log sinogram; weights each bin by its "
                        "Poisson noise (PWLS) and sets the noise level (default: the file's dose attribute; 0: unweighted)")
    r.add_argument("--weight", type=float, default=None, help="regularisation weight of tv/l1-wavelet, relative to the image scale")
    r.add_argument("--iterations", type=int, default=None, help="iterations of sense/tv/l1-wavelet")
    r.add_argument("--format", default=".h5", choices=[".h5", ".nii", ".nii.gz"], help="output format for folder input")
    r.add_argument("--log", default=None, help="also write a JSON log for single-file input")
    r.add_argument("--fast-network", nargs="?", const="graphs", default=False, choices=["graphs", "compile"],
                   help="GPU only: run the prior in bf16 with CUDA-graph replay ('graphs', the default when the flag "
                        "is given) or torch.compile + graphs ('compile': ~40 s once, then ~2.6 ms per 320² evaluation "
                        "on an H100); see medrecon.priors.FastDenoiser")
    r.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    r.set_defaults(func=cmd_recon)

    s = sub.add_parser("simulate", help="make a measurement file from an image", formatter_class=_Formatter,
                       description="Simulate undersampled MRI k-space (fastMRI layout) or a sparse-view CT sinogram "
                       "from an image (.dcm, DICOM folder, .nii/.nii.gz, .png, .npy); the ground truth is stored inside.")
    s.add_argument("modality", choices=["mri", "ct"])
    s.add_argument("--image", required=True, help="input image or volume")
    s.add_argument("--out", required=True, help="output .h5")
    s.add_argument("--slices", type=parse_slices, default=None, help="slices of a volume (default: the middle one)")
    s.add_argument("--size", type=int, default=None, help="resize to SIZE×SIZE (CT default 256)")
    s.add_argument("--seed", type=int, default=0, help="seed of mask, phase and noise")
    s.add_argument("--noise", type=float, default=None,
                   help="MRI: k-space noise std (image 99.5th percentile = 1; default 0.0); CT: Gaussian std relative to the sinogram max (default 0)")
    g = s.add_argument_group("MRI")
    g.add_argument("--coils", type=int, default=1, help="birdcage coils (1 = single-coil)")
    g.add_argument("--acceleration", type=float, default=4.0)
    g.add_argument("--center-fraction", type=float, default=0.08)
    g.add_argument("--mask-type", default="equispaced_fraction", choices=["equispaced_fraction", "equispaced", "random", "gaussian_1d"])
    g.add_argument("--phase", type=float, default=0.5, help="amplitude (rad) of the smooth random phase")
    c = s.add_argument_group("CT")
    c.add_argument("--views", type=int, default=60)
    c.add_argument("--geometry", default="parallel", choices=["parallel", "fan"])
    c.add_argument("--detector", default="equiangular", choices=["equiangular", "flat"], help="fan-beam detector")
    c.add_argument("--dose", type=float, default=None, help="photons per detector bin (Poisson noise); default: no photon noise")
    c.add_argument("--units", default="auto", choices=["auto", "hu", "unit"], help="values of the input image")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_simulate)

    e = sub.add_parser("evaluate", help="NMSE / PSNR / SSIM of a reconstruction", formatter_class=_Formatter,
                       description="fastMRI metrics: data range = the reference volume's max, SSIM per slice (7x7) averaged. "
                       "REF may be a fastMRI/simulated file (its reconstruction_esc/_rss or ground_truth is used).")
    e.add_argument("--reference", required=True)
    e.add_argument("--recon", required=True)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)

    sub.add_parser("methods", help="list reconstruction methods and what they support").set_defaults(func=cmd_methods)
    sub.add_parser("priors", help="list shipped prior checkpoints").set_defaults(func=cmd_priors)
    sub.add_parser("train", help="train a prior (see `medrecon train --help`)", add_help=False)

    d = sub.add_parser("demo", help="reconstruct bundled MRI and CT samples; PNG figure + table", formatter_class=_Formatter)
    d.add_argument("--out", default="demo_out", help="output folder")
    d.add_argument("--steps", type=int, default=100, help="diffusion steps (≤ 100 NFE)")
    d.add_argument("--no-diffusion", action="store_true", help="classical methods only")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="run benchmarks/quality.py", add_help=True)
    b.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``medrecon`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # `train` and `bench` hand every following argument to their own parsers (argparse's REMAINDER
    # would refuse a leading "--option").
    if argv and argv[0] in ("train", "bench"):
        try:
            return cmd_train(argv[1:]) if argv[0] == "train" else int(cmd_bench(argparse.Namespace(rest=argv[1:])) or 0)
        except MedreconError as err:
            _err(str(err))
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "simulate" and args.noise is None:
        args.noise = 0.0
    if args.command == "simulate" and args.size is None and args.modality == "ct":
        args.size = 256
    try:
        return int(args.func(args) or 0)
    except MedreconError as err:
        _err(str(err))
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
