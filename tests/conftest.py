"""Shared test setup. Heavy fixtures (Ray head, PostgreSQL, S3 server) live in tests/fixtures/ and are
session-scoped: one of each per test run."""
pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.s3_server",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.postgres",
    "tests.fixtures.real_model",
]


def pytest_configure(config):
    """No test reads or writes the developer's own BrightRun home (``~/.brightrun``, where
    ``scripts/run`` installs SmolLM2 and keeps the embedded database): a test that does not take
    the ``brightrun_home`` fixture sees an empty home of this run instead."""
    import os
    import tempfile

    os.environ["BRIGHTRUN_HOME"] = tempfile.mkdtemp(prefix="brightrun-test-home-")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need a CUDA device: skipped where there is none (CI deselects them
    with ``-m "not gpu"``; a lent GPU machine runs them with ``-m gpu``)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import pytest
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (marker gpu)")
    for item in gpu_tests:
        item.add_marker(skip)
