"""The live monitor per session and per lot, and the controls that act through the engine (issue 24)."""

from __future__ import annotations

from admin.base import AdminHandler

ROUTES: list[tuple[str, type[AdminHandler]]] = []
