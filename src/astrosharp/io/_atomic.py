"""Atomic, no-clobber file output.

The file is written to a temporary name in the destination folder, flushed
to disk, then renamed over the destination in one step, so a crash never
leaves a half-written image under the final name.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from ..errors import AstrosharpError, OutputExistsError

__all__ = ["atomic_output", "check_output_path"]


def check_output_path(path: Path, *, overwrite: bool, input_path: Path | None = None) -> None:
    """Raise a clear error when ``path`` cannot or must not be written.

    Raises
    ------
    AstrosharpError
        The output folder does not exist, ``path`` is a folder, or ``path``
        is the input file itself (the input is never modified).
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    """
    folder = path.parent
    if not folder.is_dir():
        raise AstrosharpError(f"output folder {folder} does not exist; create it first or choose another output path")
    if path.is_dir():
        raise AstrosharpError(f"output path {path} is a folder; give a file name")
    if path.exists():
        if input_path is not None and input_path.exists() and os.path.samefile(path, input_path):
            raise AstrosharpError(f"output {path} is the input file; astrosharp never modifies its input, choose another output path")
        if not overwrite:
            raise OutputExistsError(f"output {path} already exists; pass overwrite=True (--overwrite) to replace it")


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_output(path: Path, *, overwrite: bool) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on success move it to ``path``.

    Without ``overwrite`` the final step is a hard link, which fails rather
    than replace a file that appeared meanwhile. On any error the temporary
    file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        with open(tmp, "w+b") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise OutputExistsError(
                    f"output {path} already exists; pass overwrite=True (--overwrite) to replace it"
                ) from None
            except OSError:  # file systems without hard links
                if path.exists():
                    raise OutputExistsError(
                        f"output {path} already exists; pass overwrite=True (--overwrite) to replace it"
                    ) from None
                os.replace(tmp, path)
            else:
                tmp.unlink()
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
