"""The one exception type a user is meant to see."""


class UserError(Exception):
    """Something the user can fix: bad input, missing files, unknown names.

    The CLI prints it as a single line ``error: <message>`` and exits with status 2.
    The message should say what is wrong *and* what to do about it.
    """
