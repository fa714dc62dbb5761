"""User-facing errors.

Anything a user can cause (bad path, malformed record, unknown target) raises :class:`RwkuError` with one
line saying what is wrong, where, and what to do; the CLI prints that line and exits non-zero without a
traceback (unless ``--debug``).
"""


class RwkuError(Exception):
    """An error caused by input the user can fix; its message is the one line the CLI prints."""
