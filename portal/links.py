"""A unit's personal link: a token signed by the server (``itsdangerous``, HMAC-SHA256 with
the portal's secret) that binds the plan instance, the unit, its task and the link's
generation (``planflow.unit_links``). Nothing in it is secret; nobody can make or change one
without the secret. Whether it may still be used (the task open, the generation in force) is
read from the store when it is used, not written into the token."""

from __future__ import annotations

import os
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

__all__ = ["BadLink", "Claim", "SECRET_BLOCK", "link_url", "portal_secret", "read_link", "sign_link"]

SALT = "planflow.portal.link.v1"
SECRET_BLOCK = "planflow-portal-secret"  # the Prefect Secret block read when the environment has none
MIN_SECRET = 32  # characters


class BadLink(ValueError):
    """A token that was not made by this server with this secret (tampered, or not a link)."""


@dataclass(frozen=True)
class Claim:
    """What a link says: the plan instance's key, the unit, its task (element id), the generation."""

    key: str
    unit: str
    element: str
    generation: int


def sign_link(secret: str, claim: Claim) -> str:
    return URLSafeSerializer(secret, salt=SALT).dumps([claim.key, claim.unit, claim.element, claim.generation])


def read_link(secret: str, token: str) -> Claim:
    """The claim of a token this server signed; ``BadLink`` for any other."""
    try:
        key, unit, element, gen = URLSafeSerializer(secret, salt=SALT).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise BadLink("not a link of this server") from None
    if not all(isinstance(v, str) for v in (key, unit, element)) or not isinstance(gen, int):
        raise BadLink("not a link of this server")
    return Claim(key, unit, element, gen)


def link_url(base_url: str, token: str) -> str:
    """The address a letter gives: ``<PLANFLOW_PORTAL_URL>/u/<token>``."""
    return f"{base_url.rstrip('/')}/u/{token}"


def portal_secret() -> str | None:
    """The portal's signing secret: ``PLANFLOW_PORTAL_SECRET``, else the Prefect Secret block
    ``planflow-portal-secret``; None when neither is there (or it is shorter than 32 characters:
    the portal refuses to start, letters carry no link)."""
    secret = os.environ.get("PLANFLOW_PORTAL_SECRET")
    if not secret:
        try:
            from prefect.blocks.system import Secret

            secret = Secret.load(SECRET_BLOCK, _sync=True).get()
        except Exception:  # noqa: BLE001 - no server, no block: no secret
            secret = None
    return secret if secret and len(secret) >= MIN_SECRET else None
