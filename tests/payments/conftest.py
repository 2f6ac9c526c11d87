"""The payments tests reuse the gateway's listening app, the shop's persistence world and the admin
UI's chromium."""

from tests.admin.test_browser import browser  # noqa: F401  (a fixture)
from tests.gateway.conftest import app_server  # noqa: F401  (a fixture)
from tests.persistence.test_shop import world  # noqa: F401  (a fixture)
