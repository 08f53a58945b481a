"""Evaluations of trained models on a dataset (`service`)."""
