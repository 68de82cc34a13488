"""astrosharp._memory: freed blocks stay in the process for the next tile."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys

import pytest

from astrosharp import _memory


def _glibc_mallinfo2() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return hasattr(libc, "mallinfo2") and hasattr(libc, "gnu_get_libc_version")
    except OSError:
        return False


# In a child process, so that the "before" state is glibc's default whatever
# this test process has run already (the command line's tests call main()).
_CHILD = r"""
import ctypes, ctypes.util, json
import numpy as np
from astrosharp._memory import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
libc.mallinfo2.restype = Info
SIZE = 64 << 20

def state():
    i = libc.mallinfo2()
    return {"mmapped": i.hblkhd, "heap_free": i.fordblks}

out = {}
a = np.ones(SIZE, np.uint8)
out["default_alive"] = state()
del a
out["default_freed"] = state()
out["applied"] = keep_freed_memory()
a = np.ones(SIZE, np.uint8)
out["kept_alive"] = state()
del a
out["kept_freed"] = state()
print(json.dumps(out))
"""


@pytest.mark.skipif(not _glibc_mallinfo2(), reason="needs Linux with glibc 2.33 or later (mallinfo2)")
def test_large_blocks_come_from_the_heap_and_stay_there_when_freed() -> None:
    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=120, check=True)
    s = json.loads(res.stdout.strip().splitlines()[-1])
    size = 64 << 20
    # glibc's default: a 64 MB block is its own mapping, unmapped when freed
    assert s["default_alive"]["mmapped"] >= size
    assert s["default_freed"]["mmapped"] < size
    assert s["applied"] is True
    # kept: the block is carved from the heap and, once freed, is still there for the next one
    assert s["kept_alive"]["mmapped"] < size
    assert s["kept_freed"]["heap_free"] >= size


def test_keep_freed_memory_is_idempotent() -> None:
    first = _memory.keep_freed_memory()
    assert _memory.keep_freed_memory() is first
    if _glibc_mallinfo2():
        assert first is True
