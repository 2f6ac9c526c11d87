"""Staff accounts and their roles: owner only (issue 24)."""

from __future__ import annotations

from admin.base import AdminHandler

ROUTES: list[tuple[str, type[AdminHandler]]] = []
