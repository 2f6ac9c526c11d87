"""backoffice/viewers.py: what a viewer is (a person, not a socket) and when one expires."""

from backoffice.viewers import EXPIRES_S, REFRESH_S, count, expires_at, session_viewers, viewer_of


def test_a_signed_in_user_is_one_viewer_however_many_sockets_and_gateways() -> None:
    assert viewer_of(7, "gw-a", 1) == viewer_of(7, "gw-b", 2) == "u:7"


def test_anonymous_sockets_are_each_their_own_viewer_across_gateways() -> None:
    assert len({viewer_of(0, "gw-a", 1), viewer_of(0, "gw-a", 2), viewer_of(0, "gw-b", 1)}) == 3


def test_session_viewers_and_their_count() -> None:
    viewers = session_viewers({5: [(7, 1), (7, 2), (0, 3), (0, 4)], 6: [(8, 5)]}, "gw-a")
    assert viewers == {5: {"u:7", "s:gw-a:3", "s:gw-a:4"}, 6: {"u:8"}}
    assert (count(viewers[5]).viewers, count(viewers[5]).users) == (3, 1)
    assert count([]).as_json(sockets=0) == {"viewers": 0, "users": 0, "sockets": 0}


def test_a_viewer_outlives_late_refreshes_but_not_a_dead_gateway() -> None:
    assert EXPIRES_S >= 2 * REFRESH_S  # one late refresh does not drop anyone
    assert expires_at(1_000) == 1_000 + int(EXPIRES_S * 1000)
