"""render_markdown: what Markdown keeps (structure, safe links) and what it never lets through."""

from __future__ import annotations

import html.parser

import pytest

from community.markdown import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, render_markdown, safe_url, sanitise_html
from tests.community.xss_corpus import XSS_CORPUS

EXTRA_ATTRIBUTES = {"a": {"rel"}, "img": {"loading"}}


class Inspector(html.parser.HTMLParser):
    """Every tag and attribute of a rendered body, as a browser's parser would read them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)


def inspect(rendered: str) -> Inspector:
    inspector = Inspector()
    inspector.feed(rendered)
    inspector.close()
    return inspector


@pytest.mark.parametrize(("name", "payload"), XSS_CORPUS, ids=[name for name, _ in XSS_CORPUS])
def test_no_payload_of_the_corpus_survives(name: str, payload: str) -> None:
    rendered = render_markdown(payload)
    found = inspect(rendered)
    assert not found.comments
    for tag, attrs in found.tags:
        assert tag in ALLOWED_TAGS, (tag, rendered)
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset()) | EXTRA_ATTRIBUTES.get(tag, set())
        assert set(attrs) <= allowed, (tag, attrs, rendered)
        for key in ("href", "src"):
            value = attrs.get(key)
            if key in attrs:
                assert value is not None and safe_url(value), rendered
                assert "script" not in value.lower(), rendered
    lowered = rendered.lower()
    assert "<script" not in lowered and "<svg" not in lowered and "<iframe" not in lowered
    assert "\u202e" not in rendered and "\u2066" not in rendered and "\u200b" not in rendered


def test_markdown_structure_is_kept() -> None:
    body = (
        "# Title\n\nSome *em* and **strong** and ~~gone~~ and `code`.\n\n"
        "- one\n- two\n\n3. three\n4. four\n\n> quoted\n\n---\n\n"
        "| left | right |\n|:-----|------:|\n| 1 | 2 |\n\n"
        '[site](https://example.com/a?b=1&c=2 "Site") ![pic](/media/a.png "Pic") '
        "<https://auto.example> [mail](mailto:x@example.com) [rel](../page#top)\n\n"
        "```\nx < 1 && y > 2\n```\n"
    )
    rendered = render_markdown(body)
    assert "<h1>Title</h1>" in rendered
    assert "<em>em</em>" in rendered and "<strong>strong</strong>" in rendered
    assert "<del>gone</del>" in rendered and "<code>code</code>" in rendered
    assert "<ul>" in rendered and '<ol start="3">' in rendered and "<blockquote>" in rendered
    assert "<hr>" in rendered
    assert '<th align="left">left</th>' in rendered and '<td align="right">2</td>' in rendered
    assert (
        '<a href="https://example.com/a?b=1&amp;c=2" title="Site" rel="nofollow noopener">site</a>'
        in rendered
    )
    assert '<img src="/media/a.png" alt="pic" title="Pic" loading="lazy">' in rendered
    assert '<a href="https://auto.example" rel="nofollow noopener">' in rendered
    assert 'href="mailto:x@example.com"' in rendered and 'href="../page#top"' in rendered
    assert "<pre><code>x &lt; 1 &amp;&amp; y &gt; 2\n</code></pre>" in rendered


def test_a_refused_link_stays_as_text() -> None:
    rendered = render_markdown("[click](javascript:alert(1))")
    assert "<a" not in rendered and "click" in rendered


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/x?y#z",
        "mailto:someone@example.com",
        "/media/a.png",
        "page.html",
        "../up",
        "#anchor",
        "?q=1",
        "//cdn.example/x.png",
        "a/b:c",
    ],
)
def test_safe_urls(url: str) -> None:
    assert safe_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java%09script:alert(1)",
        "java%2509script:alert(1)",
        "jav&#x09;ascript:alert(1)",
        "java\u200bscript:alert(1)",
        "ｊａｖａｓｃｒｉｐｔ：alert(1)",
        "vbscript:msgbox(1)",
        "data:text/html,<script>alert(1)</script>",
        "data:image/png;base64,AAAA",
        "file:///etc/passwd",
        "ftp://example.com",
        "x" * 3000,
    ],
)
def test_unsafe_urls(url: str) -> None:
    assert not safe_url(url)


def test_the_sanitiser_alone_cleans_hostile_html() -> None:
    # As if the Markdown layer had let raw HTML through: the second layer still holds.
    dirty = (
        '<p onclick="x()">a<script>alert(1)</script><b>b</b>'
        '<a href="javascript:alert(1)" target="_blank">c</a>'
        '<img src="x.png" onerror="alert(1)"><img src="javascript:alert(1)">'
        "<svg><g onload=alert(1)>d</g></svg><style>p{}</style><!-- c -->"
        '<table><tr><td style="color:red">e</td></tr></table></em></p><em>open'
    )
    clean = sanitise_html(dirty)
    assert clean == (
        '<p>ab<a rel="nofollow noopener">c</a><img src="x.png" loading="lazy">'
        "<table><tr><td>e</td></tr></table></p><em>open</em>"
    )


def test_text_is_escaped_and_kept() -> None:
    rendered = render_markdown("5 > 3 & 'quotes' \"double\" ＜fullwidth＞ 中文")
    assert rendered == "<p>5 &gt; 3 &amp; 'quotes' \"double\" ＜fullwidth＞ 中文</p>\n"
