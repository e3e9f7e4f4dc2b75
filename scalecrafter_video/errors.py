"""Exceptions raised for problems a user can fix (the CLI prints them as one line)."""


class ScaleCrafterError(Exception):
    """Base class: bad input, bad configuration, missing files."""


class ConfigError(ScaleCrafterError, ValueError):
    """A schedule or preset is malformed or does not fit the model."""


class ModelLoadError(ScaleCrafterError, FileNotFoundError):
    """A model path is missing or not a supported local model."""


class NonFiniteError(ScaleCrafterError):
    """Sampling produced NaN / inf latents: nothing is written."""


def run_script(main) -> None:
    """Run a script's ``main()`` and exit with its code; a :class:`ScaleCrafterError` ends it with
    one ``error:`` line instead of a traceback, as the CLI does."""
    import sys

    try:
        sys.exit(main())
    except ScaleCrafterError as exc:
        sys.exit(f"error: {exc}")
