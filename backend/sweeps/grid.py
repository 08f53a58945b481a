"""A sweep's grid as pure logic: ``--grid NAME=V1,V2`` items parsed and checked against the
training configuration's fields, and expanded to one trial per grid point (times ``samples``).
No I/O."""
from __future__ import annotations

import itertools
from typing import Any

from backend.core.errors import InvalidInput

ALIASES = {"lora_r": "lora_rank", "lr": "learning_rate", "epochs": "num_epochs"}
MAX_TRIALS = 64
MAX_SAMPLES = 8
SCHEDULERS = ("fifo", "asha")


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["learning_rate=1e-4,5e-4", "lora_r=8,16"]`` → ``{"learning_rate": [1e-4, 5e-4],
    "lora_rank": [8, 16]}``: each value typed and checked like ``--set`` (one field's rules;
    ``lora_r``, ``lr`` and ``epochs`` are aliases). Raises InvalidInput (code ``invalid_grid``)
    for a missing ``=``, an empty value, an unknown field, a repeated field or value, a bad
    value."""
    from backend.training.config import InvalidTrainingConfig, parse_override

    if not items:
        raise InvalidInput("a sweep needs at least one --grid NAME=V1,V2", code="invalid_grid",
                           hint="e.g. --grid learning_rate=1e-4,5e-4,1e-3")
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise InvalidInput(f"--grid {item!r}: expected NAME=V1,V2,…", code="invalid_grid",
                               hint="e.g. --grid learning_rate=1e-4,5e-4,1e-3")
        name, raw = (part.strip() for part in item.split("=", 1))
        name = ALIASES.get(name, name)
        raws = [v.strip() for v in raw.split(",")]
        if not raws or any(not v for v in raws):
            raise InvalidInput(f"--grid {item!r}: empty value", code="invalid_grid")
        if name in grid:
            raise InvalidInput(f"--grid {name} given twice", code="invalid_grid")
        values = []
        for v in raws:
            try:
                values.append(parse_override(f"{name}={v}")[1])
            except InvalidTrainingConfig as exc:
                raise InvalidInput(f"--grid {item!r}: {'; '.join(exc.issues)}",
                                   code="invalid_grid") from None
        if len(set(map(repr, values))) != len(values):
            raise InvalidInput(f"--grid {item!r}: a value is repeated", code="invalid_grid")
        grid[name] = values
    return grid


def expand(grid: dict[str, list[Any]], samples: int = 1) -> list[dict[str, Any]]:
    """Every grid point (the first field varies slowest), ``samples`` times each: sample ``k`` of
    a point adds ``seed_offset=k`` (the trial trains with the preset's seed + k). Raises
    InvalidInput (code ``invalid_grid``) for samples outside 1..MAX_SAMPLES or more than
    MAX_TRIALS trials."""
    if not 1 <= int(samples) <= MAX_SAMPLES:
        raise InvalidInput(f"--samples must be 1 to {MAX_SAMPLES}, not {samples}",
                           code="invalid_grid")
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    count = len(points) * int(samples)
    if count > MAX_TRIALS:
        raise InvalidInput(f"this sweep has {count} trials, more than {MAX_TRIALS}",
                           code="invalid_grid", hint="fewer values or samples")
    if samples == 1:
        return points
    return [{**p, "seed_offset": k} for p in points for k in range(int(samples))]


def trial_overrides(params: dict[str, Any], seed: int) -> dict[str, Any]:
    """A trial's training-config values from its grid point (``seed_offset`` → ``seed``)."""
    out = {k: v for k, v in params.items() if k != "seed_offset"}
    if params.get("seed_offset"):
        out["seed"] = int(seed) + int(params["seed_offset"])
    return out


def check_scheduler(name: str) -> str:
    """Raises InvalidInput for a scheduler other than fifo / asha."""
    name = (name or "fifo").lower()
    if name not in SCHEDULERS:
        raise InvalidInput(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}",
                           code="invalid_grid")
    return name


def params_text(params: dict[str, Any]) -> str:
    """``learning_rate=0.0001 lora_rank=8`` (a trial's name and the tables' column)."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())
