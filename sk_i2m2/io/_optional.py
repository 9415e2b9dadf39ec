"""Imports of the optional dependencies of saving, exporting and serving."""

from __future__ import annotations

import importlib

__all__ = ["import_optional"]


def import_optional(module, extra, purpose):
    """Import ``module`` or raise an ImportError naming the extra that installs it.

    Parameters
    ----------
    module : str
        The module to import (e.g. ``"skops.io"``).
    extra : str
        The sk-i2m2 extra that installs it (e.g. ``"deploy"``).
    purpose : str
        What needs it, for the message (e.g. ``"sk_i2m2.save of a Pipeline"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed; "
            f'run: pip install "sk-i2m2[{extra}]"'
        ) from exc
