"""The project's error type: a problem the user must fix, reported as one line."""


class RbprepError(Exception):
    """A user's problem (bad input, bad option combination, existing output).

    The CLI prints its message as one line and exits 1; the message names the file
    (and line or byte offset where known) and what to do.
    """
