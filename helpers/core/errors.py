"""One exception type for mistakes a learner can fix: it names the cause and the fix."""
from __future__ import annotations

from helpers.core.i18n import _


class SetupError(RuntimeError):
    """Something in the environment is wrong; `fix` says what to do about it."""

    def __init__(self, cause: str, fix: str = "") -> None:
        self.cause = cause
        self.fix = fix
        super().__init__(_("{cause}\n  fix: {fix}").format(cause=cause, fix=fix) if fix else cause)
