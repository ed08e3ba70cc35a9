"""Plain training: the method with no settings (methods/baseline.py)."""

from curriculab.methods.settings import declare

declare("baseline", "curriculab.methods.baseline:Baseline")
