"""Errors the user can act on. The CLI prints their message, never a traceback."""


class CompoundFERError(Exception):
    """Base class: the message names the file or option at fault and says what to do."""


class DataError(CompoundFERError):
    """A data folder, image or annotation file that cannot be used."""


class ConfigError(CompoundFERError):
    """A bad configuration key or value."""


class WeightsError(CompoundFERError):
    """Missing or unsafe model weights."""
