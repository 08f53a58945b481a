"""Shared dashboard widgets: formatting and escaping (`widgets`), job and GPU widgets, charts, evaluation samples."""
