"""The one media store of a process (persistence/media.py): uploads under `ctx.media_dir`, indexed
in the `media` collection. Both entry points use it (the admin's lot pictures, the community's post
images and avatars), so both see the same files."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from persistence.media import MediaStore
from web.context import AppContext

log = logging.getLogger("gavel.media")


def media_of(ctx: AppContext) -> MediaStore:
    store: MediaStore | None = ctx.media
    if store is None:
        root = ctx.media_dir
        if root is None:
            root = ctx.media_dir = Path(tempfile.mkdtemp(prefix="gavel-media-"))
            log.warning("ctx.media_dir is not set; uploads go to %s and are not kept", root)
        store = ctx.media = MediaStore(Path(root), max_bytes=ctx.media_max_bytes, index=ctx.catalog.media)
    return store
