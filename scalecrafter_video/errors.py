"""Exceptions raised for problems a user can fix (the CLI prints them as one line)."""


class ScaleCrafterError(Exception):
    """Base class: bad input, bad configuration, missing files."""


class ConfigError(ScaleCrafterError, ValueError):
    """A schedule or preset is malformed or does not fit the model."""


class ModelLoadError(ScaleCrafterError, FileNotFoundError):
    """A model path is missing or not a supported local model."""


class NonFiniteError(ScaleCrafterError):
    """Sampling produced NaN / inf latents: nothing is written."""
