"""Evaluations beyond per-epoch accuracy (feature probes, transfer, VAE metrics, attacks).

Their settings, and the tasks defined here, are declared without torch in `curriculab.evaluate.settings`.
"""
