"""Deliver the outbox: render each pending row and hand it to the configured channel.

The file channel (``.eml`` files in an outbox folder) is the default, so the embedded
setup needs no mail server. A row is marked sent only after its channel accepted it;
its idempotency key names the file (and the Message-ID), so a retry after a crash
between delivery and marking overwrites the same file instead of adding one.
"""

from __future__ import annotations

import datetime as dt
import os

from engine import outbox
from flows.runtime import RunRef, engine_for, root_id
from notifications import DeliveryError, FileChannel, SmtpChannel, build_email, render


def channel_for(ref: RunRef):
    if os.environ.get("PLANFLOW_SMTP_HOST"):
        return SmtpChannel.from_env()
    return FileChannel(ref.outbox_dir)


def deliver_pending(ref: RunRef, as_of: dt.datetime) -> int:
    engine = engine_for(ref)
    plan = engine.plan
    tree = engine.tree(root_id(ref))
    channel = channel_for(ref)
    coordinator = (plan.registry.group("coordinators") or [None])[0]
    sender = os.environ.get("PLANFLOW_MAIL_FROM") or (coordinator.email if coordinator else "planflow@localhost")
    sent = 0
    transient: list[str] = []
    for row in outbox.pending(engine.db, instance_ids=tree, limit=100_000):
        unit = plan.registry.get(row.recipient)
        message = render(row.kind, outbox.decode(row.context), template_dir=plan.template_dir)
        email = build_email(message, sender=sender, to=[unit.email], message_id=row.key, date=as_of)
        try:
            channel.deliver(email, row.key)
        except DeliveryError as exc:
            outbox.mark_failed(engine.db, row.id, str(exc), permanent=exc.permanent)
            if not exc.permanent:
                transient.append(f"{row.recipient}: {exc}")
            continue
        sent += outbox.mark_sent(engine.db, row.id, as_of)
    if transient:
        raise RuntimeError(f"{len(transient)} notification(s) not delivered yet, will retry: {transient[0]}")
    return sent
