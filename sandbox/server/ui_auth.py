"""How a browser holds an API key: a signed, read-only cookie.

The page at ``/ui`` asks for an API key once (``POST /ui/login``) and gets back
a cookie that names the key's tenant, an expiry and an HMAC-SHA256 of both keyed
by that tenant's own API key. So the cookie is not the key: it cannot be turned
into one, it dies with its expiry or when the key changes, and the server keeps
no state for it (a restarted server still honours it).

The cookie is ``HttpOnly`` (the page's scripts never see it) and
``SameSite=Strict`` (no other site's page makes the browser send it), and the
server accepts it only on GET and HEAD requests (`READ_METHODS`): it can list and
read, never create, call a tool or delete. Everything that changes state still
needs ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from ..config import Settings

COOKIE_NAME = "sandbox_ui"
COOKIE_TTL_S = 12 * 3600
"""How long a login lasts in the browser."""
READ_METHODS = frozenset({"GET", "HEAD"})
"""The only requests the cookie authenticates."""

_PURPOSE = b"sandbox-ui-cookie-v1"


def _signature(key: str, tenant: str, expires: int) -> str:
    message = b"\0".join((_PURPOSE, tenant.encode(), str(expires).encode()))
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def issue_cookie(settings: Settings, tenant: str, now: float | None = None) -> str:
    """The cookie value for `tenant` (whose API key must be configured)."""
    expires = int((time.time() if now is None else now) + COOKIE_TTL_S)
    key = settings.tenant_keys()[tenant].get_secret_value()
    return f"{expires}.{_signature(key, tenant, expires)}.{tenant}"


def tenant_of_cookie(settings: Settings, value: str | None, now: float | None = None) -> str | None:
    """The tenant a cookie value was issued to; None when it is forged, stale or malformed."""
    if not value:
        return None
    expires_text, _, rest = value.partition(".")
    signature, _, tenant = rest.partition(".")
    if not expires_text.isdigit() or len(expires_text) > 12:
        return None
    expires = int(expires_text)
    if expires <= (time.time() if now is None else now):
        return None
    key = settings.tenant_keys().get(tenant)
    if key is None:
        return None
    expected = _signature(key.get_secret_value(), tenant, expires)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    return tenant


__all__ = ["COOKIE_NAME", "COOKIE_TTL_S", "READ_METHODS", "issue_cookie", "tenant_of_cookie"]
