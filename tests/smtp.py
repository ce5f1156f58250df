"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, a handler that keeps what it gets."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    """An aiosmtpd handler keeping every envelope; refuses some addresses with 550."""

    def __init__(self, refuse=(), delay: float = 0.0):
        self.refuse = set(refuse)
        self.delay = delay
        self.envelopes = []
        self.auth = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def per_recipient(self) -> Counter:
        return Counter(rcpt for env in self.envelopes for rcpt in env.rcpt_tos)
