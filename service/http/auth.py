"""API keys: who is calling, and whether they may use the admin routes.

With no key configured the service is open and every caller is the same
anonymous admin. With keys, each ``/v1`` request needs one (header
``X-API-Key``); a session belongs to the key that opened it, identified by a
hash of the key so that stores never hold keys.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from latentcast.errors import AuthError, ForbiddenError

API_KEY_HEADER = "X-API-Key"
# 128 bits of sha256: enough to tell keys apart, and no use to anyone who reads a store
OWNER_HEX_DIGITS = 32


@dataclass(frozen=True)
class Caller:
    """Who is calling: the owner id their sessions carry, and whether they hold the admin key."""

    owner: str
    admin: bool


ANONYMOUS = Caller(owner="", admin=True)


def owner_of(key: str) -> str:
    """The id stored with the sessions of ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:OWNER_HEX_DIGITS]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The configured keys; ``caller`` checks one in constant time."""

    def __init__(self, api_keys: tuple[str, ...] = (), admin_key: str | None = None) -> None:
        self._keys = tuple(_digest(k) for k in api_keys)
        self._admin = _digest(admin_key) if admin_key else None

    @property
    def enabled(self) -> bool:
        return bool(self._keys) or self._admin is not None

    def caller(self, key: str | None) -> Caller:
        """The caller holding ``key``; ``AuthError`` if keys are required and it is missing or unknown."""
        if not self.enabled:
            return ANONYMOUS
        if not key:
            raise AuthError(f"missing API key: send it in the {API_KEY_HEADER} header")
        # digests of equal length: the time of a comparison says nothing of a key's length either
        given = _digest(key)
        admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        # compare with every key, so that the time taken does not say which one matched
        known = [hmac.compare_digest(given, k) for k in self._keys]
        if not (admin or any(known)):
            raise AuthError("unknown API key")
        return Caller(owner=owner_of(key), admin=admin)

    @staticmethod
    def require_admin(caller: Caller) -> Caller:
        if not caller.admin:
            raise ForbiddenError("this route needs the admin key")
        return caller
