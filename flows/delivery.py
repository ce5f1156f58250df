"""Deliver the outbox: claim each deliverable row, render it, hand it to the channel.

The file channel (``.eml`` files in an outbox folder) is the default, so the embedded
setup needs no mail server. With ``PLANFLOW_SMTP_HOST`` set, mail goes out by SMTP:
``PLANFLOW_SMTP_PORT``, ``PLANFLOW_SMTP_SECURITY`` (starttls | ssl | none),
``PLANFLOW_SMTP_USER``, ``PLANFLOW_SMTP_TIMEOUT`` and the password, either from
``PLANFLOW_SMTP_PASSWORD`` or, better, from a Prefect Secret block named by
``PLANFLOW_SMTP_PASSWORD_BLOCK`` (the block wins when both are set). The password is
read when a delivery run starts, never stored in the repository nor logged.

A report-upward letter carries the report as documents (``planflow.documents``): built when
it is delivered, from the stored report its row names, once per delivery run.

Each row is claimed before it is sent and marked after (see ``planflow/outbox.py``); its
key is the file name and the Message-ID. A row left ``sending`` by a deliverer that died is
taken over and delivered again: the file channel does not write a key's file twice, and
SMTP sends it again with the same Message-ID, so the receiving side can drop the repeat.
One delivery run (a batch) uses one SMTP connection.

A letter to a unit that evaluates itself (the dissemination, reminders, escalations, a new
link: ``LINK_KINDS``) carries the unit's personal link to its own self-evaluation task in the
letter's plan instance (``PersonalLinks``), when the portal is configured
(``PLANFLOW_PORTAL_URL`` and its secret): signed as the letter is rendered, at the generation
in force, and never stored. A login without TLS is refused unless
``PLANFLOW_SMTP_ALLOW_PLAINTEXT_LOGIN=1``.
Temporary failures leave the row ``pending`` with its attempt counted, and
:func:`deliver_pending` raises :class:`NotDeliveredYet` so that the Prefect task
``deliver_notifications`` retries with exponential backoff; permanent failures, and rows
out of attempts, become ``failed`` (incidents) and do not fail the run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from pathlib import Path
from dataclasses import dataclass, field

from planflow import letters, outbox, unit_links
from planflow.documents import attachments_for, documents_dir
from planflow.flows.runtime import RunRef, engine_for, root_id
from planflow.notifications import DeliveryError, FileChannel, SmtpChannel, build_email, render

log = logging.getLogger("planflow.delivery")

DEFAULT_BACKOFF_SECONDS = 10.0


class NotDeliveredYet(RuntimeError):
    """Some notifications failed for a reason that may pass; they stay pending."""


def backoff_seconds() -> float:
    """First retry delay of the delivery task; each further retry waits twice as long."""
    return outbox.env_number("PLANFLOW_OUTBOX_BACKOFF_SECONDS", DEFAULT_BACKOFF_SECONDS, 0.0)


def smtp_channel(environ=None) -> SmtpChannel:
    """The SMTP channel configured by ``PLANFLOW_SMTP_*``, password from a Secret block if named."""
    env = dict(os.environ if environ is None else environ)
    block = env.get("PLANFLOW_SMTP_PASSWORD_BLOCK")
    if block:
        from prefect.blocks.system import Secret

        try:
            secret = Secret.load(block).get()
        except Exception as exc:  # noqa: BLE001 - say which block, never what it holds
            raise ValueError(f"cannot load the Prefect Secret block {block!r} named by "
                             f"PLANFLOW_SMTP_PASSWORD_BLOCK: {type(exc).__name__}") from None
        if not isinstance(secret, str):
            raise ValueError(f"the Prefect Secret block {block!r} must hold a string (the SMTP password)")
        env["PLANFLOW_SMTP_PASSWORD"] = secret
    return SmtpChannel.from_env(environ=env)


def channel_for(ref: RunRef):
    if os.environ.get("PLANFLOW_SMTP_HOST"):
        return smtp_channel()
    return FileChannel(ref.outbox_dir)


def _sender(plan) -> str:
    """The envelope sender: ``PLANFLOW_MAIL_FROM``, else the plan's coordinator (who aggregates)."""
    body = letters.coordinator(plan)
    return os.environ.get("PLANFLOW_MAIL_FROM") or (body.email if body is not None and body.email
                                                    else "planflow@localhost")


def _address(plan, row, context: dict) -> str:
    """The recipient's address: from the registry (so a corrected address is used on retry)."""
    unit = plan.registry.get(row.recipient)
    if unit is not None and unit.email:
        return unit.email
    email = (context.get("recipient") or {}).get("email")
    if not email:
        raise LookupError(f"no e-mail address for '{row.recipient}' in the registry nor in the notification")
    return email


# the letters that carry their recipient's personal link, when it has a self-evaluation task
LINK_KINDS = frozenset({"dissemination", "reminder", "overdue", "escalation-1", "escalation-2",
                        "escalation-final", "link"})


def portal_settings() -> tuple[str, str] | None:
    """The unit portal's address (``PLANFLOW_PORTAL_URL``) and signing secret
    (``planflow.portal.links.portal_secret``), when both are set: only then do letters carry links."""
    base = (os.environ.get("PLANFLOW_PORTAL_URL") or "").strip()
    if not base:
        return None
    from planflow.portal.links import portal_secret

    secret = portal_secret()
    return (base, secret) if secret else None


@dataclass
class PersonalLinks:
    """The link a letter carries: to its recipient's own self-evaluation task
    (``letters.criteria_tasks``; letters of ``LINK_KINDS``), or to the reviewer's decision the
    letter asks for (``letters.decision_task``: a review request), in the letter's root plan
    instance, at the generation of the unit's links in force (``unit_links.generation``),
    signed with the portal's secret."""

    engine: object
    base_url: str
    secret: str
    roots: dict = field(default_factory=dict)  # instance id -> its root instance's row
    tasks: dict = field(default_factory=dict)  # root id -> {unit code: its self-evaluation task}
    generations: dict = field(default_factory=dict)  # root id -> {unit code: its links' generation}

    def for_row(self, row) -> tuple[str, str | None] | None:
        """(the link, what it is for in the letter's words, None for a unit's report), or None."""
        if not row.instance_id:
            return None
        root = self.root_of(row.instance_id)
        plan = self.engine.plan
        if row.kind == "link":  # a new link to the task the letter names
            element = letters.user_task(plan, row.element_id)
        elif row.kind in LINK_KINDS:
            if root.id not in self.tasks:
                self.tasks[root.id] = letters.criteria_tasks(plan, root.started_at)
            element = self.tasks[root.id].get(row.recipient)
        else:
            element = letters.decision_task(plan, row.element_id, row.recipient, root.started_at)
        if element is None:
            return None
        form, purpose = plan.forms[element.form], None
        if form.decides:
            purpose = f"xem báo cáo và gửi {form.title[:1].lower()}{form.title[1:]}"
        from planflow.portal.links import Claim, link_url, sign_link

        if root.id not in self.generations:  # read once per instance: a letter each would be a query each
            self.generations[root.id] = unit_links.generations(self.engine.db, root.id)
        claim = Claim(root.key, row.recipient, element.id, self.generations[root.id].get(row.recipient, 0))
        return link_url(self.base_url, sign_link(self.secret, claim)), purpose

    def root_of(self, iid: int):
        if iid not in self.roots:
            inst = self.engine.instance(iid)
            self.roots[iid] = inst if inst.parent_id is None else self.root_of(inst.parent_id)
        return self.roots[iid]


def deliver_pending(ref: RunRef, as_of: dt.datetime, *, only: list[int] | None = None,
                    max_attempts: int | None = None, channel=None, logger=None) -> int:
    """Deliver the deliverable rows of ``ref``'s instance tree (every instance of its
    definition when ``ref.root_key`` is empty; only the rows ``only`` if given); return
    how many were sent. The whole batch goes through one SMTP connection.

    Raises :class:`NotDeliveredYet` when some rows failed temporarily and are still
    pending: call again later (the Prefect task does, with backoff). ``max_attempts``
    overrides ``PLANFLOW_OUTBOX_MAX_ATTEMPTS``; ``channel`` the configured channel.
    """
    logger = logger or log
    engine = engine_for(ref)
    plan, db = engine.plan, engine.db
    limit = outbox.max_attempts() if max_attempts is None else max_attempts
    tree = engine.tree(root_id(ref))
    rows = outbox.deliverable(db, instance_ids=tree, definition_id=plan.id if tree is None else None, ids=only)
    if not rows:
        return 0
    channel = channel or channel_for(ref)
    batch = _Batch(plan, db, channel, _sender(plan), outbox.worker_id(), as_of, limit, logger)
    batch.documents_dir = documents_dir(ref.outbox_dir)
    settings = portal_settings()
    batch.links = PersonalLinks(engine, *settings) if settings else None
    with channel if hasattr(channel, "__enter__") else contextlib.nullcontext():
        for row in rows:
            batch.deliver(row)
    if batch.retrying:
        logger.warning("%d notification(s) not delivered, will retry; first: %s", len(batch.retrying),
                       batch.retrying[0])
        raise NotDeliveredYet(f"{len(batch.retrying)} notification(s) not delivered yet, will retry: "
                              f"{batch.retrying[0]}")
    return batch.sent


@dataclass
class _Batch:
    """One delivery run: each row claimed, built, handed to the channel, marked."""

    plan: object
    db: object
    channel: object
    sender: str
    owner: str
    as_of: dt.datetime
    limit: int
    logger: object
    sent: int = 0
    retrying: list = field(default_factory=list)
    documents: dict = field(default_factory=dict)  # report id -> its files, built once a run
    results: dict = field(default_factory=dict)  # report id -> the results its letters carry, read once a run
    links: PersonalLinks | None = None  # the portal's links, when it is configured
    documents_dir: Path | None = None  # where write_latest put the reports' documents

    def deliver(self, row) -> None:
        db, logger = self.db, self.logger
        if not outbox.claim(db, row, self.owner):
            return  # another deliverer has it
        if row.status == "sending":
            logger.warning("notification %s: taking over from %s, whose claim of %s has lapsed; it may have "
                           "been delivered already (a file is not written again; by SMTP it goes again with "
                           "the same Message-ID)", row.key, row.claimed_by, row.claimed_at)
        try:
            context = outbox.render_context(self.plan, row, db, self.results)
            link = self.links.for_row(row) if self.links is not None else None
            if link:  # made now, for this letter: the row never holds it
                context["link"], context["link_purpose"] = link
            message = render(row.kind, context, template_dir=self.plan.template_dir)
            # the report-upward letter carries the report's PDF (or DOCX) and XLSX, built now
            # from the stored report its row names: the row holds the report's id, no file
            files = attachments_for(self.plan, db, row, self.documents, self.documents_dir)
            # From: the body that signs the letter (its address, or PLANFLOW_MAIL_FROM's mailbox)
            sender = letters.sender_address(self.plan, context, os.environ.get("PLANFLOW_MAIL_FROM")) or self.sender
            email = build_email(message, sender=sender, to=[_address(self.plan, row, context)],
                                message_id=row.key, date=self.as_of, attachments=files)
        except Exception as exc:  # noqa: BLE001 - a template or address problem: fix, then --retry
            status = outbox.release(db, row.id, self.owner, f"{type(exc).__name__}: {exc}", permanent=True)
            logger.error("notification %s to %s cannot be built: %s (%s)", row.kind, row.recipient, exc, status)
            return
        try:
            self.channel.deliver(email, row.key)
        except DeliveryError as exc:
            error, permanent = str(exc), exc.permanent
        except Exception as exc:  # noqa: BLE001 - a channel bug: count it, try again later
            error, permanent = f"{type(exc).__name__}: {exc}", False
        else:
            if outbox.mark_sent(db, row.id, self.owner, self.as_of):
                self.sent += 1
            else:
                logger.warning("notification %s was sent but its claim was taken over meanwhile", row.key)
            return
        status = outbox.release(db, row.id, self.owner, error, permanent=permanent, limit=self.limit)
        if status == "pending":
            self.retrying.append(f"{row.recipient}: {error}")
        elif status == "failed":
            logger.error("notification %s to %s failed%s: %s — see `planflow notifications`",
                         row.kind, row.recipient, "" if permanent else " after its last attempt", error)
