"""The one exception a user can cause.

Anything wrong with what a user gave us (a file, a flag, a checkpoint, a text) raises
`UserError` with one sentence that names the thing and says what to do. The command line prints
that sentence and exits with status 2; it never shows a traceback for one.
"""


class UserError(ValueError):
    """A problem with the user's input, explained in one sentence."""
