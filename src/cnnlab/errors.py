"""User-facing errors: one line that names the problem and the fix."""

from __future__ import annotations


class CnnlabError(Exception):
    """Bad input or an impossible request; the CLI prints it on one line and exits with 2."""


class ShapeError(CnnlabError):
    """A layer cannot be applied to the shape that reaches it. Besides the one-line message it
    says where, for code that acts on it (adapt): ``layer``, the dotted path of the failing layer
    or composite (None for the input itself); ``axis``, 0 for height and 1 for width when one axis
    is at fault; ``reason``, a short tag such as ``too-small`` (a window's output vanishes),
    ``concat`` or ``sum`` (branch shapes disagree); ``hint``, the advice that ends the message."""

    def __init__(self, message: str, *, layer: str | None = None, axis: int | None = None,
                 reason: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.layer, self.axis, self.reason, self.hint = layer, axis, reason, hint

    @property
    def problem(self) -> str:
        """The message without its closing advice, for a caller that gives its own."""
        msg = str(self)
        return msg.removesuffix(f"; {self.hint}") if self.hint else msg
