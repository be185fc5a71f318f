"""Evaluation: running probes through a model and the statistics of the results."""
