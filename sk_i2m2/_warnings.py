"""Warnings that point at the user's code, not at this package."""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn_user"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def warn_user(message, category=UserWarning):
    """``warnings.warn`` with the stack level of the first caller outside the package."""
    # Level 1 is this function's own call of warnings.warn, level 2 its caller.
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
