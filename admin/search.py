"""One search box across users, orders, lots and courses, and a user's page (issue 24)."""

from __future__ import annotations

from admin.base import AdminHandler

ROUTES: list[tuple[str, type[AdminHandler]]] = []
