"""The one exception type users see: a single line that says what is wrong and how to fix it."""


class KickError(Exception):
    """A problem with the user's input or environment, explained in one line that names the fix."""
