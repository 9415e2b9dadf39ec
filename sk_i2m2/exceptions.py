"""Exceptions raised by sk-i2m2."""

__all__ = ["ModelFileError"]


class ModelFileError(ValueError):
    """A saved model directory cannot be read: a file is damaged, edited or foreign.

    Raised by :meth:`I2M2Classifier.load <sk_i2m2.I2M2Classifier.load>` for a
    truncated or edited ``config.json`` or ``model.safetensors``, a file of
    another format, or weights that do not fit the stored configuration.
    The message names the file. A subclass of ``ValueError``. A missing
    file raises ``FileNotFoundError`` instead.
    """
