"""User-facing errors: one line that names the problem and the fix."""


class CnnlabError(Exception):
    """Bad input or an impossible request; the CLI prints it on one line and exits with 2."""


class ShapeError(CnnlabError):
    """A layer cannot be applied to the shape that reaches it."""
