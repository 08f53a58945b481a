"""One truth for every number (issue 14), end to end on the session's real Ray head with the tiny
model: for several small jobs (dataset sizes, presets, 1 and 2 workers, truncation) the estimate's
steps, held-out count and tokens to train are the run's, and every figure of the job reads the same
through the Monitor / Models (backend.jobs.figures), Jobs / Home (app.ui.job_widgets), Costs
(backend.costs) code paths and the CLI ``--json``."""
import json

import pytest

from app.ui import job_widgets
from backend import adapters, costs
from backend.accounts.users import ensure_local_user
from backend.cli import main
from backend.db.models import JobLog
from backend.db.session import session_scope
from backend.jobs import service as jobs
from backend.jobs.figures import PLAN_FIELDS, get_figures

pytestmark = pytest.mark.ray
FAST = ["--set", "learning_rate=0.02", "--set", "warmup_steps=0", "--set", "lora_dropout=0"]
PLAN_KEYS = ("total_steps", "validation_conversations", "train_conversations", "tokens_to_train",
             "truncated", "left_out", "trained_tokens_cut", "evaluations")


def _run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr().out
    return rc, (json.loads(out) if out.strip().startswith(("{", "[")) else out)


def write_dataset(path, n: int, turns: int = 2) -> str:
    """``n`` multi-turn conversations of varied lengths (deterministic)."""
    lines = []
    for i in range(n):
        conv = [{"role": "system", "content": "You are a concise support agent."}]
        for t in range(turns):
            conv.append({"role": "user", "content": f"Question {t} about order {i}: "
                                                    + "where is it now " * (1 + (i + t) % 4)})
            conv.append({"role": "assistant", "content": f"Answer {t}: order {i} "
                                                         + "ships tomorrow morning " * (1 + i % 5)})
        lines.append(json.dumps({"conversation_id": f"c{i:03d}", "turns": conv}))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


CASES = [  # (conversations, preset, workers, overrides)
    (40, "conservative", 1, ["num_epochs=1", "batch_size=4", "max_seq_length=512"]),
    (12, "balanced", 2, ["num_epochs=2", "batch_size=2", "gradient_accumulation_steps=2",
                         "max_seq_length=512"]),
    (9, "aggressive", 1, ["num_epochs=1", "batch_size=3", "max_seq_length=80",
                          "validation_fraction=0.2"]),  # 80 tokens: some cut, some left out
    (1, "conservative", 1, ["num_epochs=1", "batch_size=1", "max_seq_length=512"]),
]


@pytest.mark.parametrize("n,preset,workers,overrides", CASES)
def test_estimate_equals_run_and_every_path_shows_the_same_figures(
        ray_env, capsys, tmp_path, n, preset, workers, overrides):
    data = write_dataset(tmp_path / f"orders-{n}.jsonl", n)
    rc, ds = _run(capsys, "datasets", "upload", data, "--name", f"orders {n}", "--wait",
                  "--timeout", "300", "--json")
    assert rc == 0 and ds["status"] == "ready", ds
    assert ds["statistics"]["token_counting"] == "templated"  # the trainer's tokens, not raw text
    sets = [arg for o in overrides for arg in ("--set", o)] + FAST
    common = ["--dataset", ds["id"], "--preset", preset, "--workers", str(workers), *sets]
    rc, est = _run(capsys, "jobs", "estimate", *common, "--json")
    assert rc == 0 and est["plan_source"] == "exact", est
    rc, job = _run(capsys, "jobs", "create", *common, "--wait", "--timeout", "900", "--json")
    assert rc == 0 and job["status"] == "completed", (job.get("error_message"), job)
    rc, shown = _run(capsys, "jobs", "show", job["id"], "--json")
    assert rc == 0 and set(PLAN_FIELDS) <= set(shown["plan"]) and set(PLAN_FIELDS) <= set(
        shown["actual"])

    # the estimate plans the run the trainer did (acceptance 0 and 1)
    for key in PLAN_KEYS:
        assert shown["plan"][key] == est[key], key
        assert shown["actual"][key] == est[key], (key, shown["actual"], est)
    assert shown["actual"]["steps_done"] == est["total_steps"]
    held = 0 if n == 1 else max(1, round(0.2 * n if "validation_fraction=0.2" in overrides
                                         else 0.1 * n))
    assert est["validation_conversations"] + est["left_out"] >= held
    if "max_seq_length=80" in overrides:
        assert est["truncated"] > 0 and est["left_out"] > 0 and est["trained_tokens_cut"] > 0

    # every code path reads the same value
    me = ensure_local_user()
    fig = get_figures(me, job["id"])  # Monitor and Models pages
    info = jobs.get_job(me, job["id"])
    model = adapters.get_model(me, info.artifact_id)
    summary, quality = model.training_summary, model.quality_metrics
    assert fig.steps_done == fig.steps_planned == est["total_steps"] == summary["total_steps"]
    assert fig.tokens_processed == est["tokens_to_train"] == summary["total_tokens_processed"]
    assert fig.validation_conversations == est["validation_conversations"]
    as_json = json.loads(json.dumps(fig.to_dict()))
    assert (as_json.pop("plan"), as_json.pop("actual")) == (shown["plan"], shown["actual"])
    assert shown["figures"] == as_json  # CLI --json
    assert job_widgets.job_cost(info) == fig.cost  # Jobs, Home, Monitor
    by_job = {r["job_id"]: r["amount"] for r in costs.summary(me).by_job}  # Costs
    assert by_job.get(job["id"], 0.0) == pytest.approx(fig.cost, abs=1e-9)
    assert job_widgets.elapsed_s(info) == pytest.approx(fig.total_seconds)
    assert fig.training_seconds <= fig.total_seconds
    assert fig.throughput == pytest.approx(fig.tokens_processed / fig.training_seconds)
    assert fig.final_training_loss == quality["final_training_loss"]
    assert fig.hours_label == "worker-hours" and "gpu_config" not in fig.hours_label
    from backend.storage import get_object_store  # the adapter's README says the same
    readme = get_object_store().get_bytes(f"models/{model.id}/README.md").decode()
    assert f"| tokens processed (chat template applied) | {fig.tokens_processed:,} |" in readme
    assert f"{fig.steps_done:,} of {fig.steps_planned:,} planned" in readme
    assert f"| worker-hours | {fig.hours:,.4f} |" in readme
    with session_scope() as s:  # the trainer's own log says the same plan
        metas = [m for m in s.query(JobLog.metadata_).filter(JobLog.job_id == job["id"]).all()
                 if m[0] and "validation_conversations" in m[0]]
    assert metas and metas[-1][0]["validation_conversations"] == est["validation_conversations"]

    if est["validation_conversations"] == 0:  # nothing held out: no validation loss, no rating
        assert quality["final_validation_loss"] is None
        assert quality["convergence_quality"] == "not rated"
    else:
        assert quality["final_validation_loss"] is not None
        assert quality["convergence_quality"] != "not rated"
