"""A sweep's grid: parsing against the training config's fields, expansion, samples."""
import pytest

from backend.core.errors import InvalidInput
from backend.sweeps.grid import expand, params_text, parse_grid, trial_overrides


def test_grid_is_typed_and_aliases_resolve():
    grid = parse_grid(["learning_rate=1e-4,5e-4,1e-3", "lora_r=8,16"])
    assert grid == {"learning_rate": [1e-4, 5e-4, 1e-3], "lora_rank": [8, 16]}
    points = expand(grid)
    assert len(points) == 6 and points[0] == {"learning_rate": 1e-4, "lora_rank": 8}
    assert points[1] == {"learning_rate": 1e-4, "lora_rank": 16}
    assert params_text(points[-1]) == "learning_rate=0.001 lora_rank=16"


def test_samples_repeat_each_point_with_another_seed():
    points = expand(parse_grid(["learning_rate=1e-4,1e-3"]), samples=2)
    assert [p["seed_offset"] for p in points] == [0, 1, 0, 1]
    assert trial_overrides(points[1], 42) == {"learning_rate": 1e-4, "seed": 43}
    assert trial_overrides(points[0], 42) == {"learning_rate": 1e-4}


@pytest.mark.parametrize("items, words", [
    ([], "at least one"),
    (["learning_rate"], "expected NAME=V1,V2"),
    (["learning_rate=1e-4,"], "empty value"),
    (["lerning_rate=1e-4"], "unknown field"),
    (["lora_rank=eight"], "lora_rank"),
    (["lora_rank=8", "lora_r=16"], "given twice"),
    (["lora_rank=8,8"], "repeated"),
])
def test_bad_grids_are_refused_in_one_line(items, words):
    with pytest.raises(InvalidInput) as err:
        parse_grid(items)
    assert words in str(err.value) and "\n" not in str(err.value)
    assert err.value.code in ("invalid_grid",)


def test_too_many_trials_or_samples_refused():
    with pytest.raises(InvalidInput, match="more than 64"):
        expand(parse_grid(["learning_rate=" + ",".join(f"{i}e-5" for i in range(1, 10)),
                           "lora_rank=1,2,4,8,16,32,64,128"]))
    with pytest.raises(InvalidInput, match="samples"):
        expand(parse_grid(["learning_rate=1e-4"]), samples=0)
