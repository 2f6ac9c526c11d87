"""docs/openapi.yaml and the application agree on every path and method (both directions)."""

import pathlib
import re

import tornado.routing
import tornado.web

from composition.app import make_app
from gateway.app_page import AppPageHandler
from gateway.community import MODULES as COMMUNITY_MODULES
from gateway.ws import BidderSocket
from tests.gateway.conftest import AppServer

SPEC = pathlib.Path(__file__).parents[2] / "docs" / "openapi.yaml"
METHODS = ("get", "post", "patch", "put", "delete")
NOT_REST = (BidderSocket, AppPageHandler, tornado.web.StaticFileHandler)


def documented() -> dict[str, set[str]]:
    """{path: methods} read from the `paths:` block (no YAML library needed for this shape)."""
    paths: dict[str, set[str]] = {}
    current = None
    in_paths = False
    for line in SPEC.read_text().splitlines():
        if re.fullmatch(r"\S.*:", line):
            in_paths = line == "paths:"
            continue
        if not in_paths:
            continue
        if match := re.fullmatch(r"  (/\S*):", line):
            current = match.group(1)
            paths[current] = set()
        elif current and (match := re.fullmatch(rf"    ({'|'.join(METHODS)}):", line)):
            paths[current].add(match.group(1))
    return paths


def implemented(handler: type[tornado.web.RequestHandler]) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(tornado.web.RequestHandler, m)}


def rest_rules(app: tornado.web.Application) -> list[tornado.routing.Rule]:
    return [
        rule
        for rule in app.wildcard_router.rules
        if isinstance(rule.target, type)
        and not issubclass(rule.target, NOT_REST)
        # The admin UI's pages and uploaded media are HTML/files, documented in docs/admin.md.
        and not rule.matcher.regex.pattern.startswith(("/admin", "/media"))  # type: ignore[attr-defined]
        # The community's (issue 23) are in docs/openapi-community.yaml, checked by their own tests.
        and rule.target.__module__ not in {module.__name__ for module in COMMUNITY_MODULES}
    ]


def sample_url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_documented_endpoint_is_served(app_server: AppServer) -> None:
    rules = rest_rules(make_app(app_server.ctx))
    for path, methods in documented().items():
        url = sample_url(path)
        matching = [rule for rule in rules if rule.matcher.regex.fullmatch(url)]  # type: ignore[attr-defined]
        assert len(matching) == 1, path
        assert methods == implemented(matching[0].target), path


def test_every_served_endpoint_is_documented(app_server: AppServer) -> None:
    urls = {sample_url(path): methods for path, methods in documented().items()}
    for rule in rest_rules(make_app(app_server.ctx)):
        covered: set[str] = set()
        for url, methods in urls.items():
            if rule.matcher.regex.fullmatch(url):  # type: ignore[attr-defined]
                covered |= methods
        assert implemented(rule.target) <= covered, rule.matcher
        assert covered, rule.matcher
