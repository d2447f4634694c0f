"""Errors that mean "the user's configuration or input is wrong", reported as one line."""


class ConfigError(ValueError):
    """A configuration value or an input path is unusable; the message says which and why."""
