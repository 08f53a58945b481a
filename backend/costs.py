"""Cost records (compute accrued while jobs run, storage for stored objects, data transfer), monthly
summaries and budget alerts at 80 % (high) and 100 % (critical)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.access import scope
from backend.core.schemas import UserInfo
from backend.db.models import CostRecord, Notification, TrainingJob, User, utcnow
from backend.db.session import session_scope
from backend.notifications import notify

COST_TYPES = ("compute", "storage", "data_transfer")
ALERT_THRESHOLDS = ((100, "critical"), (80, "high"))


def money_text(amount: float | None) -> str:
    """The one display rule for money (every page and the CLI): to the cent ('$12.50', '$0.00'),
    except a non-zero amount under a cent, which reads '< $0.01' (never '$0.0000' or '$0.00' for
    something that did cost). None (unknown) reads '—'."""
    if amount is None:
        return "—"
    value = float(amount)
    if 0 < abs(value) < 0.01:
        return "< $0.01" if value > 0 else "> −$0.01"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def shows_cents(amount: float | None) -> bool:
    """Whether ``money_text`` shows ``amount`` as a number of cents (a share of a total is only
    meaningful next to such a number)."""
    return amount is not None and (amount == 0 or abs(float(amount)) >= 0.01)


def month_start(now: datetime | None = None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_cost(s: Session, user_id: str, cost_type: str, amount: float, *, job_id: str | None = None,
             details: dict | None = None) -> None:
    """Record a cost inside the caller's session and raise budget alerts if a threshold is crossed."""
    assert cost_type in COST_TYPES, cost_type
    if amount <= 0:
        return
    now = utcnow()
    s.add(CostRecord(user_id=user_id, job_id=job_id, cost_type=cost_type, amount=float(amount),
                     details=details, billing_period=month_start(now), recorded_at=now))
    s.flush()
    check_budget_alerts(s, user_id)


def spend_this_month(s: Session, user_id: str) -> float:
    return float(s.scalar(select(func.coalesce(func.sum(CostRecord.amount), 0.0)).where(
        CostRecord.user_id == user_id, CostRecord.billing_period == month_start())) or 0.0)


def check_budget_alerts(s: Session, user_id: str) -> None:
    """Notify once per month and threshold when spend reaches 80 % / 100 % of the budget."""
    user = s.get(User, user_id)
    if user is None or not user.monthly_budget:
        return
    spend = spend_this_month(s, user_id)
    percent = 100.0 * spend / user.monthly_budget
    period = month_start().strftime("%Y-%m")
    for threshold, priority in ALERT_THRESHOLDS:
        if percent < threshold:
            continue
        tag = f"budget-{period}-{threshold}"
        seen = s.scalar(select(func.count()).select_from(Notification).where(
            Notification.user_id == user_id, Notification.type == "cost_alert",
            Notification.action_url == f"/costs?alert={tag}")) or 0
        if not seen:
            notify(s, user_id, "cost_alert", f"Spend reached {threshold} % of your monthly budget",
                   f"${spend:,.2f} of ${user.monthly_budget:,.2f} spent in {period} "
                   f"({percent:.0f} %).", priority=priority, action_url=f"/costs?alert={tag}",
                   metadata={"threshold": threshold, "period": period, "spend": spend})
        break


@dataclass
class CostSummary:
    period: str
    total: float = 0.0
    by_type: dict[str, float] = field(default_factory=lambda: {t: 0.0 for t in COST_TYPES})
    by_job: list[dict] = field(default_factory=list)
    by_day: list[dict] = field(default_factory=list)
    by_user: list[dict] = field(default_factory=list)
    budget: float | None = None
    percent_used: float | None = None
    alert_level: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summary(actor: UserInfo, *, everyone: bool = False, now: datetime | None = None) -> CostSummary:
    """Month-to-date costs of the actor (``everyone``: all users, for admins and billing admins)."""
    start = month_start(now)
    base = select(CostRecord).where(CostRecord.billing_period == start)
    if everyone and actor.sees_all_costs:
        stmt = scope(base, CostRecord, actor, costs=True)
    else:
        stmt = base.where(CostRecord.user_id == actor.id)
    out = CostSummary(period=start.strftime("%Y-%m"))
    with session_scope() as s:
        rows = s.scalars(stmt).all()
        jobs: dict[str | None, float] = {}
        days: dict[str, dict[str, float]] = {}
        users: dict[str, float] = {}
        for r in rows:
            out.total += r.amount
            out.by_type[r.cost_type] = out.by_type.get(r.cost_type, 0.0) + r.amount
            jobs[r.job_id] = jobs.get(r.job_id, 0.0) + r.amount
            day = r.recorded_at.strftime("%Y-%m-%d")
            days.setdefault(day, {}).setdefault(r.cost_type, 0.0)
            days[day][r.cost_type] += r.amount
            users[r.user_id] = users.get(r.user_id, 0.0) + r.amount
        names = {j.id: (j.name or j.id[:8]) for j in s.scalars(
            select(TrainingJob).where(TrainingJob.id.in_([k for k in jobs if k])))}
        out.by_job = sorted(({"job_id": k, "job": names.get(k, "storage / other") if k else
                              "storage / other", "amount": v} for k, v in jobs.items()),
                            key=lambda d: -d["amount"])
        out.by_day = [{"day": d, "cost_type": t, "amount": a}
                      for d, by in sorted(days.items()) for t, a in by.items()]
        emails = {u.id: u.email for u in s.scalars(select(User).where(User.id.in_(list(users))))}
        out.by_user = [{"user": emails.get(k, k), "amount": v} for k, v in users.items()]
        me = s.get(User, actor.id)
        out.budget = me.monthly_budget if me else None
        if out.budget:
            own = spend_this_month(s, actor.id)
            out.percent_used = 100.0 * own / out.budget
            out.alert_level = ("critical" if out.percent_used >= 100 else
                               "high" if out.percent_used >= 80 else None)
    return out


def by_job_rows(summary: CostSummary) -> list[dict]:
    """The "by job" table: job name, amount as ``money_text`` shows it and its share of the total
    (None where the amount reads '< $0.01': a share next to an amount that shows no cents would
    contradict it)."""
    return [{"job": r["job"], "amount": money_text(r["amount"]),
             "share": (r["amount"] / summary.total) if summary.total and shows_cents(r["amount"])
             else None} for r in summary.by_job]
