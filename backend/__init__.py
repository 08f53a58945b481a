"""BrightRun LoRA Studio backend: settings, database, object store, Ray gateway and domain services."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # repository root (holds app/, pages/, ray_jobs/)
