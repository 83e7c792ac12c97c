"""What users see when something is wrong: one line that says what and how to fix it."""


class KickError(Exception):
    """A problem with the user's input or environment, explained in one line that names the fix."""


class KickWarning(UserWarning):
    """Something a run did differently from what was asked (fewer shots, a setting under an old name): the run
    goes on, and pytest lists the line in its warnings summary."""


class NonFiniteOutput(KickError):
    """The model produced NaN or infinite logits, log-likelihoods or losses: no score computed from them means
    anything. The message names the request (its position, and its text where the engine has it); the session adds
    the task. ``index`` is the request's position in the engine's input, when known."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
