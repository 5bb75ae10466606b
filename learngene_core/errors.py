"""Error types that carry a one-line, user-facing message.

The entry point prints ``str(err)`` of these without a traceback: each message names the offending
value and what would be valid.
"""


class LearngeneError(Exception):
    """Base class of every error the suite raises on purpose."""


class ConfigError(LearngeneError):
    """An invalid configuration value (raised before any work starts)."""


class DataError(LearngeneError):
    """A missing, unreadable or inconsistent data source, or an impossible split."""


class CheckpointError(LearngeneError):
    """A checkpoint or artifact that does not fit the network or is not one of ours."""


class OutputError(LearngeneError):
    """A result could not be written (disk full, read-only or missing folder)."""


class NonFiniteLossError(LearngeneError):
    """Training produced a NaN or infinite loss."""
