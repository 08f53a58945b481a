"""A page of results, shared by list services."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T] = field(default_factory=list)
    total: int = 0
    page: int = 1
    per_page: int = 20

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def clamp_page(page: int, per_page: int, max_per_page: int = 200) -> tuple[int, int]:
    per_page = min(max(1, int(per_page)), max_per_page)
    return max(1, int(page)), per_page
