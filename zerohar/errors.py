"""User-facing errors.

A :class:`ZeroharError` carries one sentence for the user: it names the file, column or key, what was
expected and what was found. The command line prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class ZeroharError(Exception):
    """An error caused by the user's input (a file, a flag, a config); its message is shown as is."""
