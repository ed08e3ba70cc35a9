"""Evaluations beyond per-epoch accuracy (feature probes, transfer, VAE metrics, attacks).

Tasks defined here register when `curriculab.registry.load_plugins` imports the package's modules.
"""
