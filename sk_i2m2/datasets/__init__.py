"""Bundled and generated multi-modal data sets (no network access)."""

from ._mfeat import MFEAT_VIEWS, load_mfeat

__all__ = ["MFEAT_VIEWS", "load_mfeat"]
