"""An article's body: Markdown rendered to HTML that is safe to put in a page (docs/community.md).

Two independent layers, so a gap in one is caught by the other:

1. markdown-it-py renders CommonMark (+ tables and strikethrough) with raw HTML turned off, and
   refuses every link or image whose URL is not http(s), mailto or relative (`safe_url`).
2. An allowlist sanitiser re-reads the produced HTML (html.parser) and writes it out again: only
   the tags of `ALLOWED_TAGS`, only the attributes of `ALLOWED_ATTRIBUTES` (URLs checked again),
   every text and attribute value escaped, `rel="nofollow noopener"` on links.

Pure: no I/O. Run when an article is saved; readers get the stored `body_html`.
"""

from __future__ import annotations

import html
import html.parser
import re
import unicodedata
import urllib.parse
from typing import Final

from markdown_it import MarkdownIt

ALLOWED_TAGS: Final = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "code",
        "em", "strong", "del", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "hr", "br",
    }
)  # fmt: skip
VOID_TAGS: Final = frozenset({"img", "hr", "br"})
ALLOWED_ATTRIBUTES: Final[dict[str, frozenset[str]]] = {
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "title"}),
    "ol": frozenset({"start"}),
    "th": frozenset({"align"}),
    "td": frozenset({"align"}),
}
RENAMED: Final = {"s": "del", "strike": "del"}  # markdown-it writes ~~x~~ as <s>
# Elements whose whole content goes, not only their tags (never produced with html=False; a
# second line of defence if that ever changes).
DROP_CONTENT: Final = frozenset(
    {
        "script", "style", "iframe", "object", "embed", "svg", "math", "template", "noscript",
        "textarea", "title", "xmp", "noembed", "noframes", "plaintext",
    }
)  # fmt: skip
SAFE_SCHEMES: Final = frozenset({"http", "https", "mailto"})
URL_MAX: Final = 2048
_SCHEME: Final = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_ALIGN: Final = re.compile(r"text-align:\s*(left|right|center)")
# Characters a browser skips or that hide what a URL says: whitespace, controls, and the
# invisible formatting characters (bidi overrides, zero-width spaces, BOM).
_HIDDEN: Final = re.compile(
    "[\\s\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
# Invisible characters that reorder or hide text in the rendered body (the "RTL override" trick).
_INVISIBLE_TEXT: Final = re.compile("[\u202a-\u202e\u2066-\u2069\u200b\u200e\u200f\u2060-\u2064\ufeff]")


def safe_url(url: str) -> bool:
    """Whether a link or image URL may appear: http, https, mailto, or a relative URL. The scheme is
    read the way a browser would after every trick is undone (entities are already decoded by the
    parser; here: percent-escapes, hidden characters, case, compatibility forms such as fullwidth)."""
    if len(url) > URL_MAX:
        return False
    seen = url
    for _ in range(3):  # %2509 → %09 → tab
        decoded = urllib.parse.unquote(seen)
        if decoded == seen:
            break
        seen = decoded
    plain = _HIDDEN.sub("", unicodedata.normalize("NFKC", html.unescape(seen))).lower()
    found = _SCHEME.match(plain)
    if found is not None:
        return found.group(1) in SAFE_SCHEMES
    # No scheme before the first "/", "?" or "#": a relative URL — unless a colon still hides a
    # scheme a lenient parser might accept ("java script:" was caught above; this is the rest).
    head = re.split(r"[/?#]", plain, maxsplit=1)[0]
    return ":" not in head


def _renderer() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.validateLink = safe_url  # type: ignore[method-assign]
    return md


_MD: Final = _renderer()


class _Sanitiser(html.parser.HTMLParser):
    """Re-emits only allowlisted HTML; tags are closed in order, stray end tags are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping = 0  # depth inside a DROP_CONTENT element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = RENAMED.get(tag, tag)
        if tag in DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in ALLOWED_TAGS:
            return
        kept = _attributes(tag, attrs)
        if tag == "a":
            kept.append(("rel", "nofollow noopener"))
        if tag == "img":
            if not any(name == "src" for name, _ in kept):
                return  # an image without a safe source is nothing
            kept.append(("loading", "lazy"))
        text = "".join(f' {name}="{html.escape(value, quote=True)}"' for name, value in kept)
        self.out.append(f"<{tag}{text}>")
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = RENAMED.get(tag, tag)
        if tag in VOID_TAGS:
            self.handle_starttag(tag, attrs)
        # <script/> and the like: self-closed, nothing to drop

    def handle_endtag(self, tag: str) -> None:
        tag = RENAMED.get(tag, tag)
        if tag in DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in self.open:
            return
        while self.open:
            closing = self.open.pop()
            self.out.append(f"</{closing}>")
            if closing == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(_INVISIBLE_TEXT.sub("", data), quote=False))

    # Comments, declarations, processing instructions: dropped (no handler writes them).

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))


def _attributes(tag: str, attrs: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
    kept: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in attrs:
        if name == "style" and tag in ("th", "td") and value:
            # markdown-it aligns table cells with a style; keep only the alignment, as `align`.
            found = _ALIGN.fullmatch(value.strip().rstrip(";"))
            if found is not None and "align" not in seen:
                seen.add("align")
                kept.append(("align", found.group(1)))
            continue
        if name not in allowed or name in seen or value is None:
            continue
        if name in ("href", "src") and not safe_url(value):
            continue
        if name == "start" and not (value.isdigit() and len(value) <= 9):
            continue
        seen.add(name)
        kept.append((name, _INVISIBLE_TEXT.sub("", value)))
    return kept


def sanitise_html(fragment: str) -> str:
    """Only the allowlisted tags and attributes of `fragment`, every text escaped."""
    parser = _Sanitiser()
    parser.feed(fragment)
    return parser.result()


def render_markdown(md: str) -> str:
    """An article body's HTML: Markdown (no raw HTML) → safe URLs only → allowlist sanitiser."""
    return sanitise_html(_MD.render(md))
