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
PSEUDONYM_CACHE_SIZE = 100_000


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

    _pseudonyms: dict[tuple[int, int], str] = dataclasses.field(default_factory=dict, init=False, repr=False)

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
        key = (session_id, user_id)
        name = self._pseudonyms.get(key)
        if name is None:
            # Every price frame names its leader: remembering the few active leaders saves an HMAC
            # per frame. Bounded: cleared wholesale when full (recomputing is cheap, just not free).
            if len(self._pseudonyms) >= PSEUDONYM_CACHE_SIZE:
                self._pseudonyms.clear()
            message = f"{session_id}:{user_id}".encode()
            digest = hmac.new(self.pseudonym_secret, message, hashlib.sha256).digest()
            name = self._pseudonyms[key] = PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii")[:6]
        return name
