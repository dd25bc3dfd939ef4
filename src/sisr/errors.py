"""The one exception type that users see.

Every error caused by the user's input (a file, an option, a weight file) is a
`SisrError` with a message that names the thing and the problem; the CLI prints
it as one line and exits non-zero instead of showing a traceback.
"""


class SisrError(Exception):
    """An error in the user's input, with a message fit to print as it is."""


class OutputExistsError(SisrError):
    """An output file exists already (perhaps written by another process meanwhile) and is not to be replaced."""
