"""Write the MNI152 anatomy used by the synthetic brain/head generators to a numpy-only ``.npz``.

The GPU training machine has neither nilearn nor nibabel; it reads this file through
``medrecon.data.load_anatomy(path)`` / ``make_source(..., anatomy_path=path)``.

    python data_scripts/export_anatomy.py [--out .devdata/mni152.npz] [--resolution 1]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without relying on the editable install

from medrecon.data.anatomy import export_anatomy, load_anatomy  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / ".devdata" / "mni152.npz")
    parser.add_argument("--resolution", type=int, default=1, choices=(1, 2), help="voxel size in mm")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    path = export_anatomy(args.out, resolution_mm=args.resolution)
    anatomy = load_anatomy(path)
    print(f"wrote {path}: {path.stat().st_size / 2**20:.2f} MiB, maps {anatomy.shape} at {anatomy.voxel_mm} mm "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
