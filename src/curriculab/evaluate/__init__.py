"""Evaluations beyond per-epoch accuracy (feature probes, transfer, VAE metrics, attacks).

Tasks defined here register when a task lookup imports the package's modules (`curriculab.registry`).
"""
