"""``medrecon demo`` (``make demo``): one MRI and one CT case, reconstructed classically and with a
diffusion prior, shown as a PNG figure and a printed PSNR/SSIM table.

Cases (images from ``data_scripts/samples/`` when present — the first ``*mri*`` and ``*ct*`` image
file there — else generated in code from scikit-image's Shepp–Logan phantom at 128×128):

* MRI: single-coil, 4× equispaced-fraction mask (8 % centre), simulated with
  :func:`medrecon.io.simulate.simulate_mri`; methods zero-filled, TV, and ``ddnm`` with the ``mri`` prior
  at its tuned preset (the prior's EDM noise schedule, ``samplers.METHODS["ddnm"].tuned``; measured on
  this case: 26.47 dB against 24.51 dB with the published linear-β schedule, both 100 NFE).
* CT: parallel beam, 60 views over 180°, 10⁶ photons per bin; methods FBP, TV, and ``ddnm`` with the
  ``ct`` prior at its tuned preset. The file records its dose, so the data term is weighted by each
  bin's Poisson noise (:func:`medrecon.recon.weight_by_dose`); measured on this case: 45.73 dB,
  against 35.05 dB when the file carried no noise level (``ddnm`` then assumed noiseless data) and
  41.69 dB for ``dds`` unweighted (34.13 dB weighted).

The diffusion column is skipped with a printed note when the prior or the samplers cannot be
loaded. Budget: ≤ 3 minutes on 2 CPU cores (diffusion at ``steps`` ≤ 100 NFE on 128² images).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["run_demo", "sample_images"]

IMAGE_SUFFIXES = (".png", ".npy", ".dcm", ".nii", ".gz")
DEMO_SIZE = 128


def _phantom_file(folder: Path, kind: str) -> Path:
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    img = resize(shepp_logan_phantom(), (DEMO_SIZE, DEMO_SIZE), anti_aliasing=True).astype(np.float32)
    path = folder / f"phantom_{kind}.npy"
    np.save(path, img)
    return path


def sample_images(work: Path) -> dict[str, Path]:
    """The MRI and CT demo images: bundled samples when present, else Shepp–Logan phantoms written to ``work``."""
    root = Path(__file__).resolve().parent.parent / "data_scripts" / "samples"
    found: dict[str, Path] = {}
    if root.is_dir():
        for kind in ("mri", "ct"):
            hits = sorted(p for p in root.iterdir() if kind in p.name.lower() and p.name.lower().endswith(IMAGE_SUFFIXES))
            if hits:
                found[kind] = hits[0]
    for kind in ("mri", "ct"):
        if kind not in found:
            found[kind] = _phantom_file(work, kind)
    return found


def _diffusion_available(modality: str) -> Optional[str]:
    """``None`` if the prior and samplers load, else the reason they do not."""
    try:
        from medrecon import priors, samplers  # noqa: F401

        priors.load(modality)
    except Exception as err:  # any failure here only removes the diffusion column
        return f"{type(err).__name__}: {err}"
    return None


def run_demo(out: Union[str, Path], *, steps: int = 100, quiet: bool = False, diffusion: bool = True) -> dict:
    """Run both cases, write ``out/demo.png`` and ``out/demo.json``, print the table; return the results."""
    from medrecon import metrics
    from medrecon.io import save_figure
    from medrecon.io.simulate import simulate_ct, simulate_mri
    from medrecon.recon import load_problem, reconstruct

    say = (lambda *a: None) if quiet else print
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = sample_images(out)
    steps = min(int(steps), 100)
    cases = {
        "mri": (simulate_mri(images["mri"], out / "mri_4x.h5", size=DEMO_SIZE, acceleration=4, noise=0.002),
                [("zero-filled", {}), ("tv", {})], ("ddnm", {"preset": "tuned"})),
        "ct": (simulate_ct(images["ct"], out / "ct_60views.h5", size=DEMO_SIZE, views=60, dose=1e6),
               [("fbp", {}), ("tv", {"iterations": 20})], ("ddnm", {"preset": "tuned"})),
    }
    results: dict[str, dict] = {}
    rows, labels, windows = [], [], []
    for modality, (path, classical, sampler) in cases.items():
        problem = load_problem(path)
        gt = problem.target
        lo = float(gt.min()) if modality == "ct" else 0.0
        rng = float(gt.max()) - lo
        row = [("ground truth", gt[0])]
        results[modality] = {}
        runs = [(m, opts, None) for m, opts in classical]
        reason = _diffusion_available(modality) if diffusion else "disabled by --no-diffusion"
        if reason is None:
            runs.append((*sampler, modality))
        else:
            say(f"note: {modality.upper()} diffusion column skipped ({reason})")
        for method, opts, prior in runs:
            t0 = time.perf_counter()
            img, stats = reconstruct(problem, method, prior=prior, steps=steps if prior else None, options=opts)
            sec = time.perf_counter() - t0
            m = metrics.evaluate(gt - lo, img - lo, data_range=rng)
            label = (f"{method}{' tuned' if opts.get('preset') == 'tuned' else ''} ({prior} prior)" if prior else method)
            results[modality][label] = {"psnr": m["psnr"], "ssim": m["ssim"], "nmse": m["nmse"], "seconds": round(sec, 2),
                                        **({"nfe": stats["nfe"]} if "nfe" in stats else {})}
            row.append((f"{label}\n{m['psnr']:.2f} dB / {m['ssim']:.3f}", img[0]))
        rows.append(row)
        labels.append(f"MRI 4x single-coil" if modality == "mri" else "CT 60 views parallel")
        windows.append((0.0, float(gt.max())) if modality == "mri" else (float(gt.min()), float(gt.max())))
    save_figure(out / "demo.png", rows, row_labels=labels, windows=windows,
                title="medrecon demo: PSNR (dB) / SSIM against the ground truth")
    with open(out / "demo.json", "w") as f:
        json.dump(results, f, indent=2)
    say(f"\n{'case':<6}{'method':<24}{'PSNR dB':>9}{'SSIM':>8}{'seconds':>9}")
    for modality, rs in results.items():
        for label, r in rs.items():
            say(f"{modality:<6}{label:<24}{r['psnr']:>9.2f}{r['ssim']:>8.4f}{r['seconds']:>9.1f}")
    say(f"\nfigure: {out / 'demo.png'}   table: {out / 'demo.json'}")
    return results
