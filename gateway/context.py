"""What every handler needs, built once by the composition root (run.py) or a test fixture."""

import base64
import dataclasses
import hashlib
import hmac
from typing import Any

import redis.asyncio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from engine.book.types import NO_USER
from engine.engine import Engine
from persistence.accounts import Accounts
from persistence.catalog import Catalog
from persistence.deposits import Deposits

PSEUDONYM_PREFIX = "Bidder-"


@dataclasses.dataclass
class AppContext:
    engine: Engine
    client: AsyncMongoClient[dict[str, Any]]
    db: AsyncDatabase[dict[str, Any]]
    redis: redis.asyncio.Redis
    accounts: Accounts
    pseudonym_secret: bytes
    hub: Any = None  # gateway.ws.Hub, set once the websocket side is wired
    base_url: str = ""  # public origin, e.g. "https://gavel.example"; used in pay_url links
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Built from the fields above; not constructor arguments.
    catalog: Catalog = dataclasses.field(init=False, repr=False)
    deposits: Deposits = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.pseudonym_secret:
            raise ValueError("pseudonym_secret must not be empty: pseudonyms would be guessable")
        self.catalog = Catalog(self.db, self.engine, self.pseudonym)
        self.deposits = Deposits(self.client, self.db, self.accounts, self.engine)

    def pseudonym(self, session_id: int, user_id: int) -> str:
        """A bidder's stable name within one session ("Bidder-K3QZ7A"); "" for nobody (user 0).

        An HMAC, not a hash: without the secret nobody can test a guessed user id against it, and
        the same user looks different in different sessions.
        """
        if user_id == NO_USER:
            return ""
        digest = hmac.new(self.pseudonym_secret, f"{session_id}:{user_id}".encode(), hashlib.sha256).digest()
        return PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii")[:6]
