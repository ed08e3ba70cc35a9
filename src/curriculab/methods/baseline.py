"""Plain training: every hook left at its default."""

from curriculab.methods.base import Method


class Baseline(Method):
    """The control row of every table."""

    name = "baseline"
    ddp = True
