"""Python's cyclic garbage collector, paused while a small cohort trains.

A fit creates tens of thousands of short-lived Python objects: skorch's
history rows and callbacks, copies of the fold models, optimizer and
autograd bookkeeping. Reference counting frees almost all of them, yet
their numbers set off the cyclic collector, and now and then a collection
of its oldest generation visits every object the process tracks: hundreds
of thousands once torch, scikit-learn and sk-i2m2 have run a fit. Such a
collection takes about as long as a whole small-cohort fit and finds
little of the fit's own to collect. ``benchmarks/collector.py`` measures
the pause on a first fit in a fresh process and on fits in a row, as
``GridSearchCV`` runs them.

While a small cohort trains, automatic collection is paused. Nothing is
computed differently; garbage held only in reference cycles waits for the
collector to resume when the outermost training block ends. Large data
sets train for minutes to hours, where full collections are a small
share of the time and unreclaimed cycles could add up: they train with
the collector running.

The collector's state is process-wide, so the pause is re-entrant and
thread-safe like the allocator's settings (:mod:`sk_i2m2._allocator`):
the outermost block pauses the collector and resumes it at its end, only
if the collector was running when the block began. A collector the user
disabled stays disabled. A process forked inside a block (a data loader's
worker) starts with the collector as it was before the block.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading

__all__ = ["collector_paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def collector_paused(pause=True):
    """Pause Python's automatic garbage collection for the block when ``pause``.

    Re-entrant and thread-safe (see the module docstring); with
    ``pause=False`` the block runs with the collector as it is.
    """
    global _depth, _resume
    if not pause:
        yield
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            _resume = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()


def _reset_after_fork():
    # A forked child (a data loader's worker) collects as the process did
    # before the blocks began; if it leaves them, they count down as in the
    # parent. Its lock is new, in case another thread held it at the fork.
    global _lock
    _lock = threading.Lock()
    if _depth and _resume:
        gc.enable()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_after_fork)
