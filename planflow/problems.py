"""What can be wrong in what a user wrote, said where: one located problem type.

A ``Problem`` names the file, the line and the element (when there is one) and says what
to change. ``DefinitionError`` carries every problem found in a definition, its registry,
forms or scenario; ``CalendarFileError`` the problem found in a calendar file.
``CalendarError`` is any calendar, offset or deadline that cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    element: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        what = f" element '{self.element}':" if self.element else ""
        return f"{where}:{what} {self.message}"


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CalendarError(ValueError):
    """A calendar file, an offset or a deadline could not be read; the message says what to change."""


class CalendarFileError(CalendarError):
    """A calendar file that cannot be used, with the problem located in it.

    Its text reads ``<file>, line <n>: <message>`` (the calendar's own wording).
    """

    def __init__(self, problem: Problem):
        self.problems = [problem]
        where = f", line {problem.line}" if problem.line else ""
        super().__init__(f"{problem.file}{where}: {problem.message}")
