"""The lot and session field readers both admin surfaces share: the REST admin endpoints
(gateway/rest_admin.py) and the admin UI's forms (admin/catalog.py) read a session or a lot with the
same rules, so a value one accepts the other accepts too."""

from collections.abc import Callable
from typing import Any

from persistence.catalog import Spec
from web.errors import ValidationFailed
from web.http import Fields

# Prices and deposits stay within what the websocket protocol accepts for a bid (gateway/protocol.py).
MAX_MONEY = 10**13
MAX_SOFT_CLOSE_SECONDS = 3600
MAX_SOFT_CLOSE_CAP_SECONDS = 7 * 86_400
MAX_BANDS = 20

SESSION_FIELDS = (
    "title",
    "description",
    "cover",
    "preview_start",
    "preview_end",
    "bidding_start",
    "bidding_end",
    "deposit",
    "soft_close_seconds",
    "soft_close_cap_seconds",
)
LOT_FIELDS = (
    "catalogue_no",
    "title",
    "description",
    "images",
    "specs",
    "start_price",
    "unit",
    "increment_bands",
    "reserve_price",
    "highest_price",
    "deposit",
)
LOT_REQUIRED = ("catalogue_no", "title", "start_price")


def read_session(body: Fields, *, partial: bool) -> dict[str, Any]:
    """SessionSpec keyword arguments from the body: all of them, or (`partial`) those present."""
    readers: dict[str, Callable[[], Any]] = {
        "title": lambda: body.text("title", max_length=100),
        "description": lambda: body.text("description", min_length=0, max_length=5000, multiline=True),
        "cover": lambda: body.url("cover", allow_empty=True),
        "preview_start": lambda: body.timestamp("preview_start"),
        "preview_end": lambda: body.timestamp("preview_end"),
        "bidding_start": lambda: body.timestamp("bidding_start"),
        "bidding_end": lambda: body.timestamp("bidding_end"),
        "deposit": lambda: body.integer("deposit", maximum=MAX_MONEY),
        "soft_close_seconds": lambda: body.integer("soft_close_seconds", maximum=MAX_SOFT_CLOSE_SECONDS),
        "soft_close_cap_seconds": lambda: body.integer(
            "soft_close_cap_seconds", maximum=MAX_SOFT_CLOSE_CAP_SECONDS
        ),
    }
    optional = ("description", "cover", "deposit", "soft_close_seconds", "soft_close_cap_seconds")
    values = {
        name: read() for name, read in readers.items() if body.has(name) or not (partial or name in optional)
    }
    if partial and not values:
        raise ValidationFailed("nothing to change")
    return values


def read_lot(body: Fields, *, partial: bool) -> dict[str, Any]:
    """LotSpec keyword arguments from the body: all of them, or (`partial`) those present."""
    readers: dict[str, Callable[[], Any]] = {
        "catalogue_no": lambda: body.text("catalogue_no", max_length=32),
        "title": lambda: body.text("title", max_length=100),
        "description": lambda: body.text("description", min_length=0, max_length=5000, multiline=True),
        "images": lambda: body.urls("images", max_items=20),
        "specs": lambda: tuple(
            Spec(item.text("key", max_length=32), item.text("value", max_length=200))
            for item in body.objects("specs", allowed=("key", "value"), max_items=50)
        ),
        "start_price": lambda: body.integer("start_price", minimum=1, maximum=MAX_MONEY),
        "unit": lambda: body.optional_integer("unit", minimum=1, maximum=MAX_MONEY),
        "increment_bands": lambda: _bands(body),
        "reserve_price": lambda: body.integer("reserve_price", maximum=MAX_MONEY),
        "highest_price": lambda: body.integer("highest_price", maximum=MAX_MONEY),
        "deposit": lambda: body.integer("deposit", maximum=MAX_MONEY),
    }
    values = {
        name: read()
        for name, read in readers.items()
        if body.has(name) or (not partial and name in LOT_REQUIRED)
    }
    if partial:
        if not values:
            raise ValidationFailed("nothing to change")
    elif "unit" not in values:
        values["unit"] = None
    return values


def _bands(body: Fields) -> tuple[tuple[int | None, int], ...] | None:
    """`[[upper_exclusive | null, step], ...]`: the step while the price is below `upper`."""
    if body.data.get("increment_bands") is None:
        return None
    bands = []
    for band in body.array("increment_bands", max_items=MAX_BANDS):
        if not isinstance(band, list) or len(band) != 2:
            raise ValidationFailed("every increment band must be [upper_exclusive or null, step]")
        upper, step = band
        pair = Fields({"upper": upper, "step": step}, ("upper", "step"))
        bands.append(
            (
                pair.optional_integer("upper", minimum=1, maximum=MAX_MONEY),
                pair.integer("step", minimum=1, maximum=MAX_MONEY),
            )
        )
    return tuple(bands)
