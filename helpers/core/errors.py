"""One exception type for mistakes a learner can fix: it names the cause and the fix."""
from __future__ import annotations


class SetupError(RuntimeError):
    """Something in the environment is wrong; `fix` says what to do about it."""

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(f"{cause}\n  fix: {fix}" if fix else cause)
