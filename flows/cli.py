"""The ``planflow`` command. Its commands live by what they are for: a plan
(``cli_plan``: validate, simulate), its operation (``cli_operate``: status,
notifications, sweep, serve, automations) and the data it stands on (``cli_calendar``:
a year's days off and make-up working days; ``cli_registry``: a province's units
from the official lists)."""

from __future__ import annotations

import sys

# importing them registers their commands, in this order in `planflow --help`
from planflow.flows import cli_plan  # noqa: F401, I001
from planflow.flows import cli_operate  # noqa: F401, I001
from planflow.flows import cli_start  # noqa: F401, I001
from planflow.flows import cli_calendar  # noqa: F401, I001
from planflow.flows import cli_registry  # noqa: F401, I001
from planflow.flows import cli_links  # noqa: F401, I001
from planflow.flows import cli_portal  # noqa: F401, I001
from planflow.flows import cli_bpmn  # noqa: F401, I001
from planflow.flows import cli_diagram  # noqa: F401, I001
from planflow.flows.cli_common import app

cli_registry.register(app)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
