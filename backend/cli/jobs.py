"""`brightrun jobs …` (filled in by the jobs service)."""


def register(sub) -> None:
    try:
        from backend.cli import jobs_commands
    except ImportError:
        return
    jobs_commands.register(sub)
