"""Write the small sample inputs bundled for the demo into ``data_scripts/samples/``.

* ``mri_brain.h5``: one synthetic brain slice (held-out split) in the fastMRI single-coil layout:
  ``kspace`` ``[1, 256, 256]`` complex64 = ``fft2c(image)`` (centred, orthonormal),
  ``reconstruction_esc`` ``[1, 256, 256]`` float32 = ``|image|``, attributes ``max`` (of the
  reconstruction), ``acquisition`` ("synthetic"), ``patient_id`` ("medrecon-sample"),
  ``norm`` ("magnitude 99.5th percentile = 1"). Fully sampled: the demo undersamples it.
* ``mri_brain.npy``: the same slice as a float32 magnitude image ``[256, 256]`` (input of the demo).
* ``ct_head.npy``: one synthetic head CT slice (held-out split), ``[256, 256]`` float32 in
  Hounsfield units (air −1000).

Each file stays under 1 MB. Deterministic (fixed seeds; nilearn's templates, no .devdata needed).

    python data_scripts/make_samples.py [--out data_scripts/samples]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without relying on the editable install

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from medrecon.data.anatomy import load_anatomy  # noqa: E402
from medrecon.data.synthetic import BrainMRI, HeadCT  # noqa: E402
from physics.fourier import fft2c  # noqa: E402

SIZE = 256
MRI_SEED, CT_SEED = 930001, 930002
LIMIT_BYTES = 1_000_000


def write_samples(out: Path) -> list[Path]:
    """Write the two sample files into ``out`` (atomically) and return their paths."""
    anatomy = load_anatomy(resolution_mm=1)
    out.mkdir(parents=True, exist_ok=True)
    image = BrainMRI(anatomy, "cpu", split="heldout").sample(1, SIZE, torch.Generator().manual_seed(MRI_SEED))
    kspace = fft2c(image[:, 0]).numpy().astype(np.complex64)                # [1, H, W]
    recon = np.abs(image[:, 0].numpy()).astype(np.float32)
    mri = out / "mri_brain.h5"
    tmp = mri.with_name(mri.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=kspace)
        f.create_dataset("reconstruction_esc", data=recon)
        f.attrs.update({"max": float(recon.max()), "acquisition": "synthetic", "patient_id": "medrecon-sample",
                        "norm": "magnitude 99.5th percentile = 1", "source": "medrecon BrainMRI heldout"})
    tmp.replace(mri)
    magnitude = out / "mri_brain.npy"  # the same slice as a magnitude image, for `medrecon simulate`/the demo
    tmp = magnitude.with_name("mri_brain.tmp.npy")
    np.save(tmp, recon[0])
    tmp.replace(magnitude)
    hu = HeadCT(anatomy, "cpu", split="heldout").hu(1, SIZE, torch.Generator().manual_seed(CT_SEED))
    ct = out / "ct_head.npy"
    tmp = ct.with_name("ct_head.tmp.npy")
    np.save(tmp, hu[0, 0].numpy().astype(np.float32))
    tmp.replace(ct)
    for path in (mri, magnitude, ct):
        if path.stat().st_size >= LIMIT_BYTES:
            raise RuntimeError(f"{path} is {path.stat().st_size} bytes, over the {LIMIT_BYTES}-byte limit")
    return [mri, magnitude, ct]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "data_scripts" / "samples")
    args = parser.parse_args(argv)
    for path in write_samples(args.out):
        print(f"wrote {path} ({path.stat().st_size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
