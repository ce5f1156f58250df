"""planflow notifications: Vietnamese templates and delivery channels.

The voice of planflow. Templates never decide anything: the engine decides who is
told what and when, and builds the context; this package renders it (``render``),
checks templates (``check_template``) and delivers e-mail (``build_email`` and the
channels). No Prefect and no SQL here.
"""

from .vn_format import vn_date, vn_datetime
from .channels import DeliveryError, FileChannel, SmtpChannel, build_email, message_id_for, safe_key
from .render import (
    KINDS,
    PACKAGE_TEMPLATE_DIR,
    SAMPLE_CONTEXTS,
    Message,
    TemplateError,
    TemplateProblem,
    check_template,
    render,
    template_files,
)

__all__ = [
    "KINDS",
    "PACKAGE_TEMPLATE_DIR",
    "SAMPLE_CONTEXTS",
    "DeliveryError",
    "FileChannel",
    "Message",
    "SmtpChannel",
    "TemplateError",
    "TemplateProblem",
    "build_email",
    "message_id_for",
    "check_template",
    "render",
    "safe_key",
    "template_files",
    "vn_date",
    "vn_datetime",
]
