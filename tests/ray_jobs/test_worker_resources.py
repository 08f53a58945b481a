"""The worker group's resources, and the test-only placement hook (BRIGHTRUN_TEST_WORKER_RESOURCE)."""
import pytest

from ray_jobs.driver.recipe import TEST_WORKER_RESOURCE_VAR, worker_resources


@pytest.mark.parametrize("use_gpu, env, expected", [
    (False, {}, {"CPU": 1}),
    (True, {}, None),
    (False, {TEST_WORKER_RESOURCE_VAR: "node2"}, {"CPU": 1, "node2": 1}),
    (True, {TEST_WORKER_RESOURCE_VAR: "node2"}, {"GPU": 1, "node2": 1}),
    (False, {TEST_WORKER_RESOURCE_VAR: "  "}, {"CPU": 1}),
])
def test_worker_resources(use_gpu, env, expected):
    assert worker_resources(use_gpu, env) == expected
