"""The payments tests reuse the gateway's listening app and the shop's persistence world."""

from tests.gateway.conftest import app_server  # noqa: F401  (a fixture)
from tests.persistence.test_shop import world  # noqa: F401  (a fixture)
