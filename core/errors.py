"""The errors that mean "what you gave cannot be used", as opposed to bugs.

Every user error aro raises is an `AroError`, with a message naming what is wrong and where (the file, the item
index, the option). The `aro` command prints such an error as one line and exits with status 2; any other exception
is a bug (ours or a library's) and keeps its traceback. Each class also derives from the built-in exception a
Python caller would expect (`ValueError`, `FileNotFoundError`, ...), so `except ValueError` keeps working.

>>> try:
...     raise InvalidInput("relation.json item 3: bbox has 3 values, not 4")
... except ValueError as error:
...     print(isinstance(error, AroError), error)
True relation.json item 3: bbox has 3 values, not 4
"""


class AroError(Exception):
    """A user error: printed by the CLI as one line, no traceback."""


class InvalidInput(AroError, ValueError):
    """An option, file, dataset or model that is there but cannot be used as given."""


class MissingInput(AroError, FileNotFoundError):
    """A file, folder, config or checkpoint that the command needs and that does not exist."""


class OutputRefused(AroError, FileExistsError):
    """An output path the command will not write: it holds something that is not this command's earlier output, or
    it is one of the command's inputs (see `aro.core.io`)."""


class DownloadFailed(AroError, ConnectionError):
    """A download that still failed after its retries; the message says how to resume."""
