"""Errors the user can act on: one line that names the problem and the fix."""


class SetupError(RuntimeError):
    """procscope cannot start its BPF collector; ``str()`` is the line to show."""
