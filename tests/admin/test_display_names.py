"""Display names chosen by users are escaped wherever the admin UI shows them."""

from __future__ import annotations

from tests.admin.conftest import AdminClient


async def test_display_names_are_escaped_in_the_admin_pages(admin_client: AdminClient) -> None:
    server = admin_client.server
    user_id, token = await server.register("markup")
    name = '<b>李</b>&"x"'
    assert (await server.call("PATCH", "/api/v1/me", {"display_name": name}, token=token)).status == 200
    await admin_client.sign_in()
    for path in ("/admin/users", f"/admin/users/{user_id}"):
        page = await admin_client.get(path)
        assert page.status == 200
        assert "&lt;b&gt;李&lt;/b&gt;&amp;&quot;x&quot;".encode() in page.body
        assert b"<b>\xe6\x9d\x8e</b>" not in page.body
