"""Keep the memory a run frees inside the process (Linux with glibc).

The engine allocates and frees arrays of hundreds of megabytes for every
tile (the network's 41-plane input stack of a 1120 px tile is 206 MB).
glibc serves each of them with its own ``mmap`` and hands it back with
``munmap``, so the next one starts on fresh pages, each faulted in and
zeroed by the kernel. On virtual machines that return freed guest memory
to their host that is very slow: on the 2-core machine of docs/bench.md a
first touch of 200 MB took 1.3 to 2.4 s when the memory had been free for
3 s, against 0.02 s when it had been kept.

:func:`keep_freed_memory` tells glibc to take large blocks from its heap
and to keep what is freed there (``mallopt``: no ``mmap`` blocks, no
trimming of the heap), so each tile reuses the pages the one before it
used. The command line calls it at start; library users may
call it too. It changes nothing else: the peak memory is that of the
largest set of arrays alive at once (docs/bench.md measures it), but the
process does not give memory back to the system until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = -1
"""glibc's "never give the heap's top back" (mallopt(3): -1 disables trimming)."""

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module's text).

    Returns
    -------
    bool
        True where it applies (Linux with glibc), False elsewhere (nothing
        is changed). Calling it again does nothing more.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
