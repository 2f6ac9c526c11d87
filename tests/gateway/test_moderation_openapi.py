"""docs/openapi-community.yaml and gateway/rest_moderation.py agree on every path and method."""

from __future__ import annotations

import pathlib
import re

import yaml

from gateway import rest_moderation
from tests.gateway.conftest import AppServer
from tests.gateway.test_rest_openapi import METHODS, implemented, sample_url

SPEC = pathlib.Path(__file__).parents[2] / "docs" / "openapi-community.yaml"


def documented() -> dict[str, set[str]]:
    paths = yaml.safe_load(SPEC.read_text())["paths"]
    return {
        path: {m for m in METHODS if m in item}
        for path, item in paths.items()
        if path == "/api/v1/reports" or path.startswith("/api/v1/admin/community/")
    }


def test_moderation_routes_and_the_document_agree(app_server: AppServer) -> None:
    routes = rest_moderation.routes(app_server.ctx)
    urls = {path: methods for path, methods in documented().items()}
    served: dict[str, set[str]] = {}
    for pattern, handler, _args in routes:
        matched = {
            path: methods
            for path, methods in urls.items()
            if re.fullmatch(pattern, sample_url(path.replace("{kind}", "posts").replace("{action}", "hide")))
        }
        assert matched, pattern
        covered = set().union(*matched.values())
        assert implemented(handler) == covered, pattern
        served |= dict.fromkeys(matched, covered)
    assert set(served) == set(urls)
