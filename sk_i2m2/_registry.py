"""The one registry of encoder and fusion specs.

Specs register themselves with a decorator: under a short name users pass
as a string (``encoders={"ecg": "gru"}``, ``fusion="lrtf"``), and by class
name, which is how saved models refer to them.
"""

from __future__ import annotations

__all__ = ["SpecRegistry", "REGISTRY"]


class SpecRegistry:
    """Names of spec classes, by kind (``"encoder"`` or ``"fusion"``)."""

    def __init__(self):
        self._names = {"encoder": {}, "fusion": {}}
        self._classes = {}

    def register(self, kind, name=None):
        """Class decorator: register a spec of ``kind``, under ``name`` if given."""

        def decorator(cls):
            self._classes[cls.__name__] = cls
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

    def spec_class(self, class_name):
        """The registered spec class called ``class_name``, or ``None``."""
        return self._classes.get(class_name)


REGISTRY = SpecRegistry()
