"""Errors that are the user's to fix: the CLIs print them on one line and exit with status 2."""


class UserError(Exception):
    """Bad input (file, flag, config): the message names the problem and the fix."""
