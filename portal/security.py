"""The portal's defences that are not about the task: CSRF, the per-link rate limit, the
security headers of every response.

CSRF is the signed double-submit cookie (OWASP): the page sets a random value in a cookie
and puts an HMAC of it, bound to the link's token, in a hidden field; a POST is taken only
when the field is the HMAC of the cookie it came with (``hmac.compare_digest``). A page of
another site can neither read the cookie nor make the HMAC without the server's secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque

CSRF_COOKIE = "planflow_csrf"
CSRF_FIELD = "csrf"


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)


def csrf_field(secret: str, cookie: str, token: str) -> str:
    """The hidden field's value for a cookie and a link."""
    return hmac.new(secret.encode(), f"csrf\n{cookie}\n{token}".encode(), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, cookie: str | None, field: str | None, token: str) -> bool:
    if not cookie or not field:
        return False
    return hmac.compare_digest(csrf_field(secret, cookie, token), str(field))


def token_tag(token: str) -> str:
    """A short name of a link for logs and the rate limit (the link itself is never logged)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class RateLimit:
    """At most ``limit`` requests per link in any ``window`` seconds, in memory (one process)."""

    def __init__(self, limit: int = 30, window: float = 60.0, clock=time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self.seen: dict[str, deque] = {}

    def allow(self, key: str) -> bool:
        now = self.clock()
        if len(self.seen) > 100_000:  # forget the quiet links first: memory stays bounded
            self.seen = {k: q for k, q in self.seen.items() if q and q[-1] > now - self.window}
        times = self.seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True


def security_headers(nonce: str) -> dict[str, str]:
    """Headers every response carries; the page's one style and script are allowed by ``nonce``."""
    return {
        "Content-Security-Policy": (f"default-src 'self'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                                    "img-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
                                    "frame-ancestors 'none'"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
