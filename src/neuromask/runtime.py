"""Process-wide settings that make CPU work faster, applied by the command line.

On Linux with glibc, every tensor above 32 MB (a batch of 3D feature maps) is given its
own memory mapping by ``malloc`` and handed back to the kernel when freed, so the next
allocation page-faults its way through fresh zeroed pages. On the 2-core development
machine this kernel time made up two fifths of a training step at 3 mm.
``tune_allocator`` keeps such memory in the process instead (``mallopt``: no mmap for
large blocks, and no trimming of the heap's free top); training and mask steps then ran
about twice as fast (``benchmarks/bench_allocator.py``). Until round 19 the heap was
still trimmed above 1 GiB free, which a forward pass of 8 masked images on the 1.5 mm
grid frees at once: every such pass then page-faulted again, and masked inference there
ran 1.52 times as long (a training step of 8 images 1.43 times). The price is memory
that the process keeps once it has peaked, which suits a command that runs one job and
exits.

``neuromask`` (the command) calls it at start; Python users may call it themselves.
``NEUROMASK_ALLOCATOR=default`` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


@functools.cache
def _glibc(function: str):
    """A C library function, or None off Linux or where the library lacks it (musl)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")  # runs a helper program: looked up once
    try:
        return getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None


#: ``mallopt``'s value for a trim threshold that never trims.
NEVER_TRIM = -1


def tune_allocator(trim_threshold: int = NEVER_TRIM) -> bool:
    """Keep large freed blocks in the process (glibc only); True when applied.

    ``trim_threshold``: free bytes at the top of the heap above which glibc hands them
    back to the kernel (``NEVER_TRIM``: never; ``benchmarks/bench_allocator.py`` compares
    1 GiB, the setting before round 19)."""
    if os.environ.get("NEUROMASK_ALLOCATOR", "").lower() == "default":
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def release_free_memory() -> bool:
    """Hand the heap's free memory back to the kernel (glibc ``malloc_trim``), so that
    the resident set measures what is in use; True when done."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
