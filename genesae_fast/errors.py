"""Exceptions that carry a one-line message meant for the user."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input (a file, an option, a store): its message is one line, printed as is.

    The CLI turns it into exit status 2 with no traceback.
    """
