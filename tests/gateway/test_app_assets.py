"""The bidder app's files, without a browser: page weight, the vendored libraries, colour contrast,
the page's CSP, every translated string in both languages, and money.js's parsing and formatting
(run in node, or in chromium when there is no node)."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import re
import shutil
import subprocess
from typing import Any

import pytest

from tests.gateway.conftest import AppServer

APP = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "static" / "app"
PAGE_WEIGHT_LIMIT = 150 * 1024  # bytes, JS + CSS of any one page, uncompressed (issues 20, 21)
MIN_CONTRAST = 4.5  # WCAG 2 AA for body text
# (foreground, background) token pairs that carry text somewhere in app.css.
TEXT_PAIRS = [
    ("ink", "paper"),
    ("muted", "paper"),
    ("muted", "page"),
    ("brand", "paper"),
    ("brand-ink", "brand"),
    ("lead", "lead-soft"),
    ("warn", "warn-soft"),
    ("danger", "paper"),
    ("danger", "brand-soft"),
    ("paper", "ink"),  # toasts
]
LANGUAGES = ("en", "zh-CN")


IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,$]+\s*from\s*)?|\bexport\s*\{[^}]*\}\s*from\s*)["']\./([\w.-]+\.js)["']"""
)
LAZY = re.compile(r"""import\(\s*["']\./([\w.-]+\.js)["']\s*\)""")


def static_closure(entry: str) -> set[str]:
    """js/ modules `entry` loads with its static imports (dynamic `import()`s are other pages)."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(IMPORT.findall((APP / "js" / name).read_text()))
    return seen


def lazy_entries() -> list[str]:
    """The groups main.js loads on a first visit (`lazyGroups`)."""
    return sorted(set(LAZY.findall((APP / "js" / "main.js").read_text())))


def group_assets(modules: set[str]) -> list[pathlib.Path]:
    """What a lazy group's modules load besides modules: its strings (js/lang/<group>.${lang}.js,
    the larger language counted) and stylesheets ("/static/app/<name>.css")."""
    found: list[pathlib.Path] = []
    for name in sorted(modules):
        source = (APP / "js" / name).read_text()
        for group in re.findall(r"`\./lang/([\w-]+)\.\$\{lang\}\.js`", source):
            strings = (APP / "js" / "lang").glob(f"{group}.*.js")
            found.append(max(strings, key=lambda path: path.stat().st_size))
        found.extend(APP / css for css in re.findall(r"""["']/static/app/([\w-]+\.css)["']""", source))
    return found


def core_files() -> list[pathlib.Path]:
    """What every page loads: the stylesheet, main.js and its static imports (the auction screens,
    the shell), the vendored modules and one language's core strings (the larger)."""
    languages = [p for p in (APP / "js" / "lang").glob("*.js") if p.stem in LANGUAGES]
    return [
        APP / "app.css",
        *(APP / "js" / name for name in sorted(static_closure("main.js"))),
        *sorted((APP / "vendor").glob("*.js")),
        max(languages, key=lambda path: path.stat().st_size),
    ]


def page_files() -> dict[str, list[pathlib.Path]]:
    """{page: the JS and CSS it loads}: the first screen (the core) and the core plus each lazy group
    on its own (its modules, the core's left out, and its strings). The HTML shell (under 1 KiB)
    is not counted."""
    core = core_files()
    core_modules = static_closure("main.js")
    pages = {"first screen": core}
    for entry in lazy_entries():
        extra = sorted(static_closure(entry) - core_modules)
        pages[entry] = core + [APP / "js" / name for name in extra] + group_assets(set(extra))
    return pages


def test_every_page_weighs_at_most_150_kib() -> None:
    pages = page_files()
    assert len(pages) >= 3 and "account.js" in pages and "shop.js" in pages
    every_file = {p.name for p in (APP / "js").glob("*.js")} | {p.name for p in APP.glob("*.css")}
    counted = {path.name for files in pages.values() for path in files}
    assert every_file <= counted, f"files no page loads: {sorted(every_file - counted)}"
    weights = {page: sum(path.stat().st_size for path in files) for page, files in pages.items()}
    core = set(pages["first screen"])
    print()
    for page, files in pages.items():
        print(f"{page:>16}: {weights[page]:>7} bytes ({weights[page] / 1024:.1f} KiB)")
        for path in files if page == "first screen" else [f for f in files if f not in core]:
            print(f"{'':>18}{path.stat().st_size:>7}  {path.relative_to(APP)}")
    assert {page: w for page, w in weights.items() if w > PAGE_WEIGHT_LIMIT} == {}


def test_every_vendored_file_is_listed_with_its_hash_and_licence() -> None:
    table = (APP / "vendor" / "VENDOR.md").read_text()
    rows = {
        cells[0].strip("` "): cells
        for line in table.splitlines()
        if line.startswith("| `")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    vendored = [path for path in (APP / "vendor").iterdir() if path.suffix == ".js"]
    assert vendored
    for path in vendored:
        assert path.name in rows, f"{path.name} is not listed in VENDOR.md"
        cells = rows[path.name]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == cells[-1], f"{path.name}: sha256 differs"
        licences = re.findall(r"`(LICEN[CS]E[^`]*)`", cells[-2])
        assert licences, f"{path.name}: no licence file named"
        for licence in licences:
            assert (APP / "vendor" / licence).stat().st_size > 0, licence
    for name in rows:
        assert (APP / "vendor" / name).exists(), f"VENDOR.md lists {name}, which is not there"


def test_every_vendored_file_is_an_es_module() -> None:
    """The import map loads them as modules: a UMD/CommonJS build (preact 10.29.8's
    dist/preact.min.module.js is one) exports nothing and the app never renders."""
    for path in (APP / "vendor").glob("*.js"):
        exports = re.search(r"\bexport\s*(\{[^}]+\}|default\b)", path.read_text())
        assert exports, f"{path.name} exports nothing"


# -- contrast ----------------------------------------------------------------------------------
def colour_tokens(css: str) -> dict[str, tuple[int, int, int]]:
    root = re.search(r":root\s*\{(.*?)\}", css, re.S)
    assert root, "app.css has no :root block"
    tokens = {}
    for name, value in re.findall(r"--([\w-]+)\s*:\s*#([0-9a-fA-F]{3,6})\s*;", root.group(1)):
        if len(value) == 3:
            value = "".join(digit * 2 for digit in value)
        tokens[name] = (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))
    return tokens


def luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_wcag_formula() -> None:
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((0x77, 0x77, 0x77), (255, 255, 255)) == pytest.approx(4.48, abs=0.01)


def test_every_text_colour_pair_has_contrast_of_at_least_4_5() -> None:
    tokens = colour_tokens((APP / "app.css").read_text())
    ratios = {f"{fg} on {bg}": contrast(tokens[fg], tokens[bg]) for fg, bg in TEXT_PAIRS}
    print("\n" + "\n".join(f"  {ratio:5.2f}:1  {pair}" for pair, ratio in ratios.items()))
    assert {pair: round(r, 2) for pair, r in ratios.items() if r < MIN_CONTRAST} == {}


# -- the page's CSP --------------------------------------------------------------------------------
async def test_the_page_allows_only_the_import_maps_hash_as_inline_script(app_server: AppServer) -> None:
    answer = await app_server.call("GET", "/")
    assert answer.status == 200
    inline = re.findall(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", answer.body, re.S)
    assert len(inline) == 1 and b'"imports"' in inline[0]  # the import map is the only inline script
    expected = "'sha256-" + base64.b64encode(hashlib.sha256(inline[0]).digest()).decode() + "'"
    directives = {
        part.split()[0]: part.split()[1:]
        for part in answer.headers["Content-Security-Policy"].split(";")
        if part.strip()
    }
    assert sorted(directives["script-src"]) == sorted(["'self'", expected])
    assert "'unsafe-inline'" not in answer.headers["Content-Security-Policy"]
    assert directives["object-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]


# -- i18n ------------------------------------------------------------------------------------------
def balanced(source: str, start: int) -> str:
    """The text of the {...} or (...) opening at `start`, skipping strings and comments."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack: list[str] = []
    i = start
    while i < len(source):
        char = source[i]
        if char in "\"'`":
            i += 1
            while source[i] != char:
                i += 2 if source[i] == "\\" else 1
        elif source.startswith("//", i):
            i = source.index("\n", i)
        elif source.startswith("/*", i):
            i = source.index("*/", i) + 1
        elif char in pairs:
            stack.append(pairs[char])
        elif char in ")]}":
            assert stack.pop() == char, f"unbalanced at {i}"
            if not stack:
                return source[start : i + 1]
        i += 1
    raise AssertionError("unbalanced")


def string_tables() -> dict[str, set[str]]:
    """{language: keys} from js/lang/<language>.js and the lazy groups' js/lang/<group>.<language>.js
    (`export default { "key": "text", ... }`)."""
    found: dict[str, set[str]] = {language: set() for language in LANGUAGES}
    for language in LANGUAGES:
        for path in [APP / "js" / "lang" / f"{language}.js", *(APP / "js" / "lang").glob(f"*.{language}.js")]:
            source = path.read_text()
            opening = re.search(r"export\s+default\s*\{", source)
            assert opening, f"lang/{path.name} exports no table"
            block = balanced(source, opening.end() - 1)
            found[language] |= set(re.findall(r'^\s*"([^"\\]+)"\s*:', block, re.M))
    return found


def used_keys() -> dict[str, str]:
    """{key: file} for every t("literal") in js/*.js (keys built at run time cannot be checked)."""
    used: dict[str, str] = {}
    for path in sorted((APP / "js").glob("*.js")):  # the screens, not js/lang/
        for key in re.findall(r'(?<![\w.$])t\(\s*"([^"\\]+)"\s*[,)]', path.read_text()):
            used.setdefault(key, path.name)
    return used


def test_every_translated_key_used_has_english_and_chinese() -> None:
    keys = string_tables()
    used = used_keys()
    assert len(used) > 10 and all(len(keys[language]) > 10 for language in LANGUAGES)
    missing = {
        language: sorted(f"{key} ({used[key]})" for key in used if key not in keys[language])
        for language in LANGUAGES
    }
    assert missing == {"en": [], "zh-CN": []}
    # No string only one language has (it would show in English to a Chinese reader, or as a key),
    # but English singulars: `key_one` is used when n is 1 (js/i18n.js); Chinese needs none.
    english_only = {key for key in keys["en"] - keys["zh-CN"] if not key.endswith("_one")}
    assert sorted(english_only) == [] and sorted(keys["zh-CN"] - keys["en"]) == []


def test_the_key_parser_sees_what_it_should() -> None:
    source = 'x = t("a.b"); y = t("c", { n }); z = t("error." + code); cat("d"); o.t("e")'
    assert re.findall(r'(?<![\w.$])t\(\s*"([^"\\]+)"\s*[,)]', source) == ["a.b", "c"]
    assert balanced('{ a: "}", b: { c: `{` } } tail', 0) == '{ a: "}", b: { c: `{` } }'


# -- money.js --------------------------------------------------------------------------------------
PARSE_CASES: list[tuple[str, dict[str, Any]]] = [
    ("1,234.5", {"fen": 123450}),
    ("0.1", {"fen": 10}),
    ("１２.３４", {"fen": 1234}),
    ("¥12", {"fen": 1200}),
    ("￥ 1 000", {"fen": 100000}),
    ("12。5", {"fen": 1250}),
    (" 7.05 ", {"fen": 705}),
    ("007", {"fen": 700}),
    ("1.", {"fen": 100}),
    ("1.234", {"error": "precision"}),
    ("abc", {"error": "format"}),
    ("-5", {"error": "format"}),
    ("1e3", {"error": "format"}),
    ("1.2.3", {"error": "format"}),
    ("", {"error": "empty"}),
    ("   ", {"error": "empty"}),
    ("0", {"error": "range"}),
    ("0.00", {"error": "range"}),
    ("99999999999.99", {"fen": 9_999_999_999_999}),
    ("100000000000", {"error": "range"}),
    ("100000000000.01", {"error": "range"}),
    # floats would get these wrong: 0.29 * 100 = 28.999999999999996
    ("0.29", {"fen": 29}),
    ("1234567.89", {"fen": 123456789}),
]
FORMAT_CASES: list[tuple[int, str]] = [
    (123450, "¥1,234.50"),
    (5, "¥0.05"),
    (0, "¥0.00"),
    (100, "¥1.00"),
    (-123450, "−¥1,234.50"),
    (9_999_999_999_999, "¥99,999,999,999.99"),
]

MONEY_SCRIPT = """
const [parse, format] = JSON.parse(CASES);
const results = {
  parsed: parse.map((text) => money.parseYuan(text)),
  formatted: format.map((fen) => money.formatYuan(fen)),
  signed: money.formatYuan(500, { sign: true }),
  missing: [money.formatYuan(null), money.formatYuan(1.5)],
};
"""


def money_results_in_node(node: str) -> Any:
    cases = json.dumps([[text for text, _ in PARSE_CASES], [fen for fen, _ in FORMAT_CASES]])
    script = (
        f"import * as money from {json.dumps((APP / 'js' / 'money.js').as_uri())};\n"
        f"const CASES = {json.dumps(cases)};\n{MONEY_SCRIPT}\nconsole.log(JSON.stringify(results));"
    )
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=True
    )
    return json.loads(done.stdout)


async def money_results_in_chromium(request: pytest.FixtureRequest) -> Any:
    browser = request.getfixturevalue("browser")
    server: AppServer = request.getfixturevalue("app_server")
    page = await browser.new_page()
    try:
        await page.goto(server.base_url + "/healthz")
        cases = json.dumps([[text for text, _ in PARSE_CASES], [fen for fen, _ in FORMAT_CASES]])
        return await page.evaluate(
            "async (CASES) => { const money = await import('/static/app/js/money.js');"
            + MONEY_SCRIPT
            + "return results; }",
            cases,
        )
    finally:
        await page.close()


async def test_money_parses_yuan_exactly_and_formats_fen(request: pytest.FixtureRequest) -> None:
    node = shutil.which("node")
    results = money_results_in_node(node) if node else await money_results_in_chromium(request)
    assert dict(zip([text for text, _ in PARSE_CASES], results["parsed"], strict=True)) == dict(PARSE_CASES)
    assert results["formatted"] == [text for _, text in FORMAT_CASES]
    assert results["signed"] == "+¥5.00"
    assert results["missing"] == ["—", "—"]
