"""Runners for tables whose runs are not one model trained by `fit` (DESIGN.md "Runs that are not one model")."""
