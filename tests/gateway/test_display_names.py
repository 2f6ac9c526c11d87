"""Display names: Unicode letters (Chinese too), NFKC-normalised, 1-32 characters, no control,
format or bidi-override characters; sign-in names stay ASCII and case-insensitively unique."""

from __future__ import annotations

import pytest

from persistence.accounts import InvalidDisplayName, validate_display_name
from tests.gateway.conftest import AppServer


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("张伟", "张伟"),
        ("  李　小龙  ", "李 小龙"),  # NFKC: the ideographic space is a space; ends trimmed
        ("ＡＢＣ１２３", "ABC123"),  # full-width forms fold to ASCII
        ("ﬁne", "fine"),  # compatibility ligature
        ("Zoë Åström", "Zoë Åström"),
        ("Zoe\u0308", "Zoë"),  # combining diaeresis composes
        ("Ахмед", "Ахмед"),
        ("محمد", "محمد"),
        ("佐藤 さくら", "佐藤 さくら"),
        ("x" * 32, "x" * 32),
        ("O'Brien-Smith", "O'Brien-Smith"),
    ],
)
def test_accepted(raw: str, kept: str) -> None:
    assert validate_display_name(raw) == kept


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "x" * 33,
        "bad\u0000name",
        "tab\tname",
        "new\nline",
        "del\x7f",
        "evil\u202etxt.exe",  # right-to-left override
        "iso\u2066late",  # left-to-right isolate
        "zero\u200bwidth",  # zero-width space (Cf)
        "joiner\u200d",  # zero-width joiner (Cf)
        "bom\ufeff",
        "soft\u00adhyphen",
        "private\ue000use",
        "line\u2028sep",
        "z\u0301\u0301\u0301\u0301\u0301algo",
        "noncharacter\U000e0001",  # language tag (Cf)
    ],
)
def test_refused(raw: str) -> None:
    with pytest.raises(InvalidDisplayName):
        validate_display_name(raw)


async def test_change_display_name_through_the_api(app_server: AppServer) -> None:
    user_id, token = await app_server.register("wei")
    me = await app_server.call("GET", "/api/v1/me", token=token)
    assert me.json["display_name"] == "wei" and me.json["username"] == "wei"
    changed = await app_server.call("PATCH", "/api/v1/me", {"display_name": " 王伟 "}, token=token)
    assert changed.status == 200 and changed.json["display_name"] == "王伟"
    assert (await app_server.call("GET", "/api/v1/me", token=token)).json["display_name"] == "王伟"
    bad = await app_server.call("PATCH", "/api/v1/me", {"display_name": "a\u202eb"}, token=token)
    assert bad.status == 400 and bad.code == "INVALID_DISPLAY_NAME"
    unknown = await app_server.call("PATCH", "/api/v1/me", {"username": "other"}, token=token)
    assert unknown.status == 400
    anonymous = await app_server.call("PATCH", "/api/v1/me", {"display_name": "x"})
    assert anonymous.status == 401
    # The sign-in name is unchanged and still unambiguous: no second "WEI".
    taken = await app_server.call("POST", "/api/v1/auth/register", {"username": "WEI", "password": "p" * 10})
    assert taken.status == 409 and taken.code == "USERNAME_TAKEN"
    for confusable in ("wеi", "ｗｅｉ", "wei\u200b"):  # Cyrillic е, full width, zero width: refused
        answer = await app_server.call(
            "POST", "/api/v1/auth/register", {"username": confusable, "password": "p" * 10}
        )
        assert answer.status == 400 and answer.code == "VALIDATION"
    assert user_id
