"""Atomic file writes: write under a temporary name in the same folder, then ``os.replace``.

A reader (or a rerun of ``medrecon recon DIR``) therefore sees either no file or a complete one,
never a half-written file. Temporary names start with ``.tmp-`` and keep the final name's
extension (``.tmp-<pid>-<name>``) so format-sniffing writers (nibabel, matplotlib) still work.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Union

__all__ = ["atomic_path", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"
PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on error delete it.

    The parent folder is created if missing. ``os.replace`` is atomic on POSIX and Windows when
    source and destination are on the same file system, which the shared folder guarantees.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TMP_PREFIX}{os.getpid()}-{final.name}")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
