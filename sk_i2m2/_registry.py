"""The one registry of the package's pluggable classes, by kind and name.

Encoder and fusion specs register under a short name users pass as a
string (``encoders={"ecg": "gru"}``, ``fusion="lrtf"``) and by class name,
which is how saved models refer to them. Outcome types register under a
short name (``"classes"``, ``"cox"`` ...), and every estimator of the
family by class name, which is how ``load`` finds the class a file was
saved from.
"""

from __future__ import annotations

__all__ = ["Registry", "REGISTRY"]

_SPEC_KINDS = ("encoder", "fusion")


class Registry:
    """Classes by kind (``"encoder"``, ``"fusion"``, ``"outcome"``, ``"estimator"``)."""

    def __init__(self):
        self._names = {kind: {} for kind in (*_SPEC_KINDS, "outcome", "estimator")}
        self._classes = {kind: {} for kind in self._names}

    def register(self, kind, name=None):
        """Class decorator: register a class of ``kind``, under ``name`` if given."""

        def decorator(cls):
            self._classes[kind][cls.__name__] = cls
            if name is not None:
                self._names[kind][name] = cls
            return cls

        return decorator

    def register_factory(self, kind, name, factory):
        """Register ``factory`` (called without arguments) under the short ``name``."""
        self._names[kind][name] = factory

    def names(self, kind):
        """Sorted short names of ``kind``."""
        return sorted(self._names[kind])

    def create(self, kind, name):
        """A default instance of the spec (or factory) registered as ``name``, or ``None``."""
        cls = self._names[kind].get(name)
        return None if cls is None else cls()

    def class_named(self, kind, class_name):
        """The registered class of ``kind`` called ``class_name``, or ``None``."""
        return self._classes[kind].get(class_name)

    def spec_class(self, class_name):
        """The registered encoder or fusion spec class called ``class_name``, or ``None``."""
        for kind in _SPEC_KINDS:
            if class_name in self._classes[kind]:
                return self._classes[kind][class_name]
        return None


REGISTRY = Registry()
