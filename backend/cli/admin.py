"""`brightrun config`, `db upgrade`, `users …`, `reconcile`, `notifications …`, `costs …`."""
from __future__ import annotations

from backend.cli.common import actor, console, money, print_json, safe, table


def register(sub) -> None:
    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)

    db = sub.add_parser("db", help="database maintenance").add_subparsers(dest="db_cmd",
                                                                          required=True)
    db.add_parser("upgrade", help="create or migrate the database schema").set_defaults(
        func=cmd_db_upgrade)

    users = sub.add_parser("users", help="users and budgets (team mode)").add_subparsers(
        dest="users_cmd", required=True)
    p = users.add_parser("create", help="create a password user")
    p.add_argument("email")
    p.add_argument("--name", required=True)
    p.add_argument("--role", default="user", choices=["user", "admin", "billing_admin"])
    p.add_argument("--password", help="(or BRIGHTRUN_NEW_PASSWORD; asked when omitted)")
    p.add_argument("--budget", type=float, help="monthly budget in dollars")
    p.set_defaults(func=cmd_users_create)
    p = users.add_parser("list", help="list users")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_users_list)
    p = users.add_parser("set-budget", help="set (or clear with 0) a user's monthly budget")
    p.add_argument("email")
    p.add_argument("amount", type=float)
    p.set_defaults(func=cmd_users_budget)

    p = sub.add_parser("reconcile", help="mark jobs/validations whose Ray job died as failed; "
                       "remove what dead uploads left")
    p.add_argument("--loop", action="store_true", help="keep reconciling every --interval seconds")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between passes (default BRIGHTRUN_RECONCILE_INTERVAL_S)")
    p.add_argument("--stop-with-pid", type=int, default=None,
                   help="with --loop: stop when this process is gone (scripts/run passes its own)")
    p.set_defaults(func=cmd_reconcile)

    notes = sub.add_parser("notifications", help="your notifications").add_subparsers(
        dest="notes_cmd", required=True)
    p = notes.add_parser("list")
    p.add_argument("--unread", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notes_list)
    p = notes.add_parser("read", help="mark one (or --all) as read")
    p.add_argument("id", nargs="?")
    p.add_argument("--all", action="store_true")
    p.set_defaults(func=cmd_notes_read)

    costs = sub.add_parser("costs", help="costs").add_subparsers(dest="costs_cmd", required=True)
    p = costs.add_parser("summary", help="month-to-date costs")
    p.add_argument("--all-users", action="store_true", help="admins / billing admins: everyone")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_costs_summary)


def cmd_config(args) -> int:
    from backend.core.config import get_settings

    rows = get_settings().describe()
    if args.json:
        print_json({var: value for var, value, _ in rows})
    else:
        table("Effective settings", ["variable", "value", "meaning"], rows)
    return 0


def cmd_db_upgrade(args) -> int:
    from backend.db.session import upgrade

    rev = upgrade()
    console.print(f"database at revision {rev}")
    return 0


def cmd_users_create(args) -> int:
    import getpass
    import os

    from backend.accounts.users import create_user

    password = args.password or os.environ.get("BRIGHTRUN_NEW_PASSWORD") or getpass.getpass()
    u = create_user(args.email, args.name, password, args.role, args.budget)
    console.print(f"created {u.role} {safe(u.email)} ({u.id})")
    return 0


def cmd_users_list(args) -> int:
    from backend.accounts.users import list_users

    users = list_users(actor(args))
    if args.json:
        print_json([u.to_json() for u in users])
    else:
        table("Users", ["email", "name", "role", "budget"],
              [(u.email, u.name, u.role, money(u.monthly_budget)) for u in users])
    return 0


def cmd_users_budget(args) -> int:
    from backend.accounts.users import find_user, set_budget

    target = find_user(args.email)
    u = set_budget(actor(args), target.id, args.amount or None)
    console.print(f"{safe(u.email)}: monthly budget {money(u.monthly_budget)}")
    return 0


def cmd_reconcile(args) -> int:
    from backend.core.config import get_settings
    from backend.reconciler import reconcile_all, run_loop

    if not args.loop:
        console.print(f"reconciled {reconcile_all()} item(s)")
        return 0
    interval = get_settings().reconcile_interval_s if args.interval is None else args.interval
    console.print(f"reconciler: a pass every {interval:g} s")
    return run_loop(max(0.5, interval), stop_with_pid=args.stop_with_pid,
                    report=lambda line: console.print(line, markup=False))


def cmd_notes_list(args) -> int:
    from backend.notifications import list_notifications

    notes = list_notifications(actor(args), unread_only=args.unread)
    if args.json:
        print_json([n.to_json() for n in notes])
    else:
        table("Notifications", ["id", "when", "priority", "title", "read"],
              [(n.id, n.created_at.strftime("%Y-%m-%d %H:%M"), n.priority, n.title,
                "yes" if n.read else "no") for n in notes])
    return 0


def cmd_notes_read(args) -> int:
    from backend.core.errors import InvalidInput
    from backend.notifications import mark_all_read, mark_read

    who = actor(args)
    if args.all:
        console.print(f"marked {mark_all_read(who)} read")
    elif args.id:
        mark_read(who, args.id)
    else:
        raise InvalidInput("give a notification id or --all")
    return 0


def cmd_costs_summary(args) -> int:
    from backend.costs import summary

    s = summary(actor(args), everyone=args.all_users)
    if args.json:
        print_json(s.to_dict())
        return 0
    console.print(f"[bold]{s.period}[/bold] month to date: {money(s.total)}"
                  + (f" of {money(s.budget)} budget ({s.percent_used:.0f} %)" if s.budget else ""))
    table("By type", ["type", "amount"], [(k, money(v)) for k, v in s.by_type.items()])
    table("By job", ["job", "amount"], [(j["job"], money(j["amount"])) for j in s.by_job])
    return 0


def register_ray(sub) -> None:
    ray = sub.add_parser("ray", help="the local Ray head (when RAY_ADDRESS is unset)").add_subparsers(
        dest="ray_cmd", required=True)
    ray.add_parser("start", help="start (or reuse) the local Ray head").set_defaults(func=cmd_ray_start)
    ray.add_parser("stop", help="stop the local Ray head this product started").set_defaults(
        func=cmd_ray_stop)
    ray.add_parser("status", help="where jobs run").set_defaults(func=cmd_ray_status)


def cmd_ray_start(args) -> int:
    from backend.cluster.gateway import get_gateway

    gw = get_gateway()
    if gw.is_remote:
        console.print(f"using the Ray cluster at {safe(gw.address)}")
        return 0
    head = gw.ensure_local_head()
    console.print(f"local Ray head up: {head.address} (pid {head.pid})")
    return 0


def cmd_ray_stop(args) -> int:
    from backend.cluster.gateway import get_gateway

    console.print("stopped" if get_gateway().stop_local_head() else "no local head was running")
    return 0


def cmd_ray_status(args) -> int:
    from backend.cluster.gateway import get_gateway

    gw = get_gateway()
    console.print(f"Ray Job API: {safe(gw.address)} ({'remote' if gw.is_remote else 'local'})")
    return 0
