"""glibc allocator settings while a model trains or predicts on the CPU.

A conv expert's activations at training batch sizes are tens to hundreds of
MB (16 channels of a 112 x 112 input at batch 212 is 170 MB per layer).
glibc serves every allocation above its mmap threshold (at most 32 MB with
its dynamic rule) with a fresh ``mmap`` and unmaps it on ``free``, so every
such tensor of every step is faulted in page by page again: on 2 cores, one
epoch of the default experts of an AV-MNIST-shaped set spent almost as much
time in the kernel as in torch. Raising the mmap and trim thresholds lets glibc
keep freed blocks in its heap and hand them to the next step, which removes
the page faults and the system time (measured in
``benchmarks/avmnist_cpu.py``).

This changes where memory comes from, not what is computed, so a model is
bit-identical with and without it. The alternatives change the model: a
smaller CPU batch takes more optimizer steps and other BatchNorm statistics,
and micro-batching changes BatchNorm too. The settings are process-wide,
so they apply only while ``fit`` or prediction runs on the CPU. glibc has no
call that reads its thresholds or gives the dynamic rule back, so afterwards
they are set to the values that rule reaches once a large block has been
freed (an mmap threshold of 32 MiB on 64-bit systems, twice that for
trimming), and ``malloc_trim`` returns the memory kept during the block to
the system. A user who chose thresholds through the ``MALLOC_*_``
environment variables or ``GLIBC_TUNABLES`` keeps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading

__all__ = ["cpu_allocator"]

# mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Both thresholds while training: blocks up to 1 GiB are reused from the heap.
TRAINING_THRESHOLD = 1 << 30
#: The largest mmap threshold of glibc's dynamic rule (DEFAULT_MMAP_THRESHOLD_MAX).
DYNAMIC_MMAP_THRESHOLD_MAX = 32 * 2**20 if ctypes.sizeof(ctypes.c_void_p) == 8 else 512 * 2**10

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_lock = threading.Lock()
_depth = 0


def _glibc():
    """The C library when it is glibc (Linux), else ``None``."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def _user_chose_thresholds():
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc" in tunables


def _set_thresholds(libc, mmap_threshold, trim_threshold):
    libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)


@contextlib.contextmanager
def cpu_allocator(device):
    """Keep freed memory for reuse while the block runs on the CPU under glibc.

    Re-entrant and thread-safe: the outermost block raises the thresholds
    and sets them back afterwards (see the module docstring). No effect on
    other devices, other C libraries, or when the user set the thresholds.
    """
    global _depth
    libc = _glibc() if device.type == "cpu" and not _user_chose_thresholds() else None
    if libc is None:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _set_thresholds(libc, TRAINING_THRESHOLD, TRAINING_THRESHOLD)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set_thresholds(libc, DYNAMIC_MMAP_THRESHOLD_MAX, 2 * DYNAMIC_MMAP_THRESHOLD_MAX)
                libc.malloc_trim(0)
