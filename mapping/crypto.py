"""ISP secret encryption: MultiFernet with dedicated keys from the environment.

Keys come from settings.ISP_SECRET_KEYS (newest first) and are never derived from
SECRET_KEY, so rotating the Django key cannot lose stored ISP passwords (a Modoboa trap).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.signals import setting_changed


class SecretKeyError(Exception):
    """The configured keys cannot decrypt a stored secret, or are malformed."""


@lru_cache(maxsize=1)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise SecretKeyError("ISP_SECRET_KEYS is empty: set at least one Fernet key.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise SecretKeyError(
            "ISP_SECRET_KEYS holds a value that is not a Fernet key "
            "(32 url-safe base64-encoded bytes); generate one with "
            "`python manage.py rotate_isp_keys --generate`."
        ) from exc


def _current() -> MultiFernet:
    return _fernet(tuple(settings.ISP_SECRET_KEYS))


def encrypt(raw: str) -> str:
    """Encrypt `raw` under the newest key; the result is safe to store."""
    return _current().encrypt(raw.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a stored token with any configured key."""
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise SecretKeyError(
            "A stored ISP password cannot be decrypted with the configured ISP_SECRET_KEYS "
            "(was a key removed before `rotate_isp_keys` ran?)."
        ) from exc


def reencrypt(token: str) -> str:
    """Return `token` re-encrypted under the newest key (MultiFernet.rotate)."""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as exc:
        raise SecretKeyError("A stored ISP password cannot be decrypted for rotation.") from exc


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _reset(**kwargs: Any) -> None:
    if kwargs.get("setting") == "ISP_SECRET_KEYS":
        _fernet.cache_clear()


setting_changed.connect(_reset)
