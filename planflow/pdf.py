"""A PDF of a Word document, by LibreOffice headless (``soffice --convert-to pdf``).

LibreOffice is a program, not a Python package: on Debian ``apt-get install
libreoffice-writer-nogui fonts-liberation`` (Liberation Serif has the metrics of Times New
Roman, which the report's template names). ``PLANFLOW_SOFFICE`` names the program when it
is not ``soffice`` on the PATH. Each conversion runs with a LibreOffice profile of its own in
a temporary folder (``-env:UserInstallation``), so conversions at the same time do not
collide, and is stopped after ``PLANFLOW_PDF_TIMEOUT`` seconds (120). Without the program
there is no PDF: :func:`convert` says why, and the caller keeps the DOCX.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True)
class Converted:
    pdf: bytes | None
    note: str  # why there is no PDF, or "" when there is one


def converter() -> str | None:
    """The LibreOffice program to convert with, or None when there is none."""
    named = os.environ.get("PLANFLOW_SOFFICE")
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return shutil.which("soffice") or shutil.which("libreoffice")


def timeout() -> float:
    text = os.environ.get("PLANFLOW_PDF_TIMEOUT")
    try:
        return float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"PLANFLOW_PDF_TIMEOUT must be a number of seconds, not {text!r}") from None


def convert(docx: bytes, name: str = "report") -> Converted:
    """The PDF of a .docx file's bytes, or why there is none."""
    program = converter()
    if program is None:
        return Converted(None, "LibreOffice (soffice) is not installed: no PDF, the DOCX is kept")
    with tempfile.TemporaryDirectory(prefix="planflow-pdf-") as tmp:
        work = Path(tmp)
        source = work / f"{name}.docx"
        source.write_bytes(docx)
        command = [program, f"-env:UserInstallation={(work / 'profile').as_uri()}", "--headless", "--norestore",
                   "--convert-to", "pdf", "--outdir", str(work / "out"), str(source)]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                cwd=tmp)
        try:
            _, err = proc.communicate(timeout=timeout())
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # soffice and what it started, nothing else
            proc.communicate()
            return Converted(None, f"LibreOffice did not convert within {timeout():g} s: no PDF, the DOCX is kept")
        pdf = work / "out" / f"{name}.pdf"
        if proc.returncode != 0 or not pdf.is_file():
            detail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return Converted(None, f"LibreOffice could not convert: {detail[0]}: no PDF, the DOCX is kept")
        return Converted(pdf.read_bytes(), "")
