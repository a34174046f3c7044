"""Photos (照片): console uploads and camera snapshots; images only, size-limited, stored under the data dir.

A file is accepted when its first bytes are a JPEG, PNG, GIF or WebP signature; it is stored under a
random name with the extension of its real type, so nothing uploaded is ever served as HTML or script.
"""
from __future__ import annotations

import re
import secrets
from pathlib import Path

from backend.services import errors
from backend.services.context import current

MAX_PHOTO_BYTES = 5 * 1024 * 1024
URL_PREFIX = "/api/v1/files/"  # served to a bearer token or a console session
_NAME = re.compile(r"^[A-Za-z0-9_-]{16,64}\.(jpg|png|gif|webp)$")
MIME = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}


def upload_dir() -> Path:
    d = current().config.data_dir / "uploads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def image_type(data: bytes) -> str | None:
    """The image type from the file's signature (magic bytes), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def save_photo(data: bytes) -> str:
    """Store an uploaded image; returns its URL. BadInput when empty, too large or not an image."""
    if not data:
        raise errors.BadInput("the photo is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise errors.BadInput(f"the photo is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MiB",
                              {"limit": MAX_PHOTO_BYTES})
    kind = image_type(data)
    if kind is None:
        raise errors.BadInput("only JPEG, PNG, GIF or WebP images are accepted")
    name = f"{secrets.token_urlsafe(18)}.{kind}"
    (upload_dir() / name).write_bytes(data)
    return URL_PREFIX + name


def photo_path(name: str) -> tuple[Path, str]:
    """The stored file of a photo name, with its MIME type; NotFound for anything else."""
    if not _NAME.match(name):
        raise errors.NotFound("no such photo")
    path = upload_dir() / name
    if not path.is_file():
        raise errors.NotFound("no such photo")
    return path, MIME[name.rsplit(".", 1)[1]]


def is_local_photo(url: object) -> bool:
    """True for a photo stored here (the console shows only those as images; other references as text)."""
    return isinstance(url, str) and url.startswith(URL_PREFIX) and bool(_NAME.match(url[len(URL_PREFIX):]))
