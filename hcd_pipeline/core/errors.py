"""The exceptions hcd_pipeline raises on bad input; each message names the file and the reason."""

from __future__ import annotations

__all__ = ["HcdError", "ImageReadError", "ImageWriteError", "WeightsError", "SettingsError", "StorageError"]


class HcdError(Exception):
    """Base class of every error this package raises for bad input or settings."""


class ImageReadError(HcdError, ValueError):
    """An input could not be decoded as a supported image (message: ``"<file>: <reason>"``)."""


class ImageWriteError(HcdError, OSError):
    """An output image could not be written (message names the destination and the reason)."""


class WeightsError(HcdError, ValueError):
    """A weights file is missing, corrupt, or does not fit the model it is loaded into."""


class SettingsError(HcdError, ValueError):
    """Settings (CLI flags, job specs, presets) that do not fit together."""


class StorageError(HcdError, OSError):
    """Object storage or a folder could not be read or written (message names the URI and the reason)."""
