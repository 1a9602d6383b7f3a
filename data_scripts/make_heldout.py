"""Write the held-out evaluation sets of the synthetic data (``split="heldout"``, fixed seeds).

One ``.npz`` per source: ``images`` (``[n, 1, size, size]``; complex64 for MRI, float32 in
CT_SCALING units for CT), ``recipe`` (the source's recipe as JSON text), ``name``, ``seed``.
Training uses ``split="train"`` (disjoint slice bands for brain/head) and other seeds.

    python data_scripts/make_heldout.py [--out .devdata/heldout] [--n 64] [--size 128]
                                        [--anatomy .devdata/mni152.npz] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without relying on the editable install

import numpy as np  # noqa: E402
import torch  # noqa: E402

from medrecon.data import make_source  # noqa: E402
from medrecon.data.anatomy import load_anatomy  # noqa: E402

# Fixed seeds of the held-out sets (training runs must not use these).
HELDOUT_SEEDS = {"mri-brain": 910001, "mri-body": 910002, "ct-head": 920001, "ct-body": 920002}


def write_heldout(out: Path, n: int, size: int, anatomy_path: Path | None, device: str) -> list[Path]:
    """Write one npz per entry of :data:`HELDOUT_SEEDS` into ``out``; returns the paths."""
    anatomy = load_anatomy(anatomy_path) if anatomy_path is not None and anatomy_path.is_file() else load_anatomy()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, seed in HELDOUT_SEEDS.items():
        source = make_source(name, device, split="heldout", anatomy=anatomy)
        images = source.sample(n, size, torch.Generator(device=device).manual_seed(seed)).cpu().numpy()
        path = out / f"heldout_{name}_{size}.npz"
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, images=images, recipe=np.array(json.dumps(source.recipe)),
                            name=np.array(name), seed=np.int64(seed))
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".devdata" / "heldout")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--anatomy", type=Path, default=ROOT / ".devdata" / "mni152.npz",
                        help="anatomy npz (falls back to nilearn when the file is missing)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    for path in write_heldout(args.out, args.n, args.size, args.anatomy, args.device):
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
