"""`brightrun models …` (filled in by the models service)."""


def register(sub) -> None:
    try:
        from backend.cli import models_commands
    except ImportError:
        return
    models_commands.register(sub)
