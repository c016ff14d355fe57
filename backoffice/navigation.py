"""Navigation of the trader's room and the partner dashboard.

Each app registers its own sections in ``AppConfig.ready()``, so a section
appears in the navigation when the app that serves it has landed, never as a
dead link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavItem:
    area: str  # "room" or "partner"
    key: str
    label: str
    url_name: str
    order: int = 100
    icon: str = ""


_items: dict[tuple[str, str], NavItem] = {}


def register(item: NavItem) -> None:
    _items[(item.area, item.key)] = item


def items(area: str) -> list[NavItem]:
    return sorted((i for i in _items.values() if i.area == area), key=lambda i: (i.order, i.key))
