"""curriculab: a reproducibility harness for curriculum-style training procedures."""

__version__ = "0.1.0"
