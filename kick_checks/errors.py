"""What users see when something is wrong: one line that says what and how to fix it."""


class KickError(Exception):
    """A problem with the user's input or environment, explained in one line that names the fix."""


class KickWarning(UserWarning):
    """Something a run did differently from what was asked (fewer shots, a setting under an old name): the run
    goes on, and pytest lists the line in its warnings summary."""
