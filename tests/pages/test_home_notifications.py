"""Home (stats cards, recent datasets, active jobs, quick actions) and Notifications (list, links,
mark read, mark all read, unread only, sidebar unread count)."""
from __future__ import annotations

from app.ui.widgets import literal
from backend import notifications
from backend.costs import add_cost
from backend.db.models import TrainingJob
from backend.db.session import session_scope
from tests.pages.conftest import TIMEOUT, make_dataset, open_app, texts


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _links(at) -> list[tuple[str, str, str]]:
    return [(p.proto.label, p.proto.page, p.proto.query_string) for p in at.get("page_link")]


def _unread_link(at) -> str:
    return next(label for label, page, _ in _links(at) if page == "notifications")


def test_home_cards_recent_datasets_and_active_jobs(actor):
    ready = make_dataset(actor, "Ready <one>")
    make_dataset(actor, "Pending", validate=False)
    with session_scope() as s:
        job = TrainingJob(user_id=actor.id, dataset_id=ready.id, preset_id="balanced", name="run-1",
                          hyperparameters={}, gpu_config={}, total_epochs=1, status="running",
                          progress=40.0)
        s.add(job)
        s.flush()
        job_id = job.id
        add_cost(s, actor.id, "compute", 12.5, job_id=job_id)
    at = open_app()
    assert not at.exception, at.exception
    m = _metrics(at)
    assert (m["Datasets"], m["Ready datasets"], m["Active jobs"], m["Models"]) == ("2", "1", "1",
                                                                                   "0")
    assert m["Spend this month"] == "$12.50"
    links = _links(at)
    assert (literal("Ready <one>"), "datasets", f"id={ready.id}") in links
    assert (literal("run-1"), "monitor", f"job_id={job_id}") in links
    assert ("Upload dataset", "datasets", "") in links
    assert ("Configure training", "configure", "") in links


def test_home_empty(actor):
    at = open_app()
    m = _metrics(at)
    assert (m["Datasets"], m["Active jobs"], m["Spend this month"]) == ("0", "0", "$0.00")
    assert "No active training jobs" in texts(at)


def test_notifications_list_link_and_mark_read(actor):
    d = make_dataset(actor, "<i>Shiny</i>")  # validation notifies: dataset ready
    make_dataset(actor, "Broken", content=b"nope\n")  # dataset failed (high priority)
    at = open_app("notifications")
    assert not at.exception, at.exception
    assert _unread_link(at) == "Notifications (2 unread)"
    page = texts(at)
    assert literal("Dataset “<i>Shiny</i>” is ready") in page
    assert "<i>" not in page
    assert ":orange-badge[:material/warning: high]" in page  # the failed one
    assert ("Open", "datasets", f"id={d.id}") in _links(at)
    items = notifications.list_notifications(actor)
    ready = next(n for n in items if n.type == "dataset_ready")
    at.button(key=f"notifications_read_{ready.id}").click().run(timeout=TIMEOUT)
    assert not at.exception
    assert notifications.unread_count(actor) == 1
    assert _unread_link(at) == "Notifications (1 unread)"
    assert not [b for b in at.button if b.key == f"notifications_read_{ready.id}"]
    at.toggle(key="notifications_unread_only").set_value(True).run(timeout=TIMEOUT)
    assert literal("Dataset “Broken” failed validation") in texts(at)
    assert "Shiny" not in texts(at)
    at.button(key="notifications_mark_all").click().run(timeout=TIMEOUT)
    assert notifications.unread_count(actor) == 0
    assert "Marked 1 notification(s) as read." in texts(at)
    assert "No unread notifications." in texts(at)
    assert _unread_link(at) == "Notifications (0 unread)"
    assert at.button(key="notifications_mark_all").disabled
