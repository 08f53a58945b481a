"""Shared test setup. Heavy fixtures (Ray head, PostgreSQL, S3 server) live in tests/fixtures/ and are
session-scoped: one of each per test run."""
pytest_plugins = [
    "tests.fixtures.env",
    "tests.fixtures.s3_server",
    "tests.fixtures.ray_cluster",
    "tests.fixtures.postgres",
    "tests.fixtures.real_model",
]
