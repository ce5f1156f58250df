"""The signed report file a unit uploads: PDF or DOCX only, size-limited, stored by its SHA-256.

The file is read in chunks into a temporary file beside the store of files and hashed as
it comes; past the limit reading stops. Its kind is told by its content, not its name: a
PDF starts with ``%PDF-``, a DOCX is a ZIP holding ``word/document.xml``. Only once the
engine has recorded the report is it moved to ``<files_dir>/<sha256>.<ext>``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 64 * 1024
DEFAULT_MAX_UPLOAD = 10 * 1024 * 1024


class UploadRefused(ValueError):
    """A file the portal does not take: the HTTP status and the Vietnamese reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Upload:
    sha256: str
    name: str  # as the unit's computer named it, cleaned for showing
    size: int
    ext: str  # "pdf" or "docx"
    temp: Path

    def payload(self) -> dict:
        return {"sha256": self.sha256, "name": self.name, "size": self.size, "type": self.ext}

    def keep(self, files_dir: Path) -> Path:
        """Move the file to its place, ``<sha256>.<ext>`` (the same file twice is kept once)."""
        target = files_dir / f"{self.sha256}.{self.ext}"
        os.replace(self.temp, target)
        return target

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


def max_upload() -> int:
    """``PLANFLOW_PORTAL_MAX_UPLOAD`` bytes (default 10 MB)."""
    value = os.environ.get("PLANFLOW_PORTAL_MAX_UPLOAD", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_UPLOAD


def size_text(limit: int) -> str:
    return f"{limit / 1024 / 1024:.0f} MB" if limit >= 1024 * 1024 else f"{limit / 1024:.0f} KB"


def clean_name(name: str | None) -> str:
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", (name or "").strip()) or "bao-cao"
    return name[-200:]


def kind_of(path: Path) -> str | None:
    """``pdf`` or ``docx`` by the file's content; None for anything else."""
    with path.open("rb") as f:
        head = f.read(5)
    if head == b"%PDF-":
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                return "docx" if "word/document.xml" in z.namelist() else None
        except zipfile.BadZipFile:
            return None
    return None


async def receive(upload, files_dir: Path, limit: int) -> Upload:
    """Read the uploaded file (a Starlette ``UploadFile``) into a temporary file, checked."""
    files_dir.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(prefix=".upload-", dir=files_dir)
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise UploadRefused(413, f"Tệp quá lớn: tối đa {size_text(limit)}.")
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise UploadRefused(400, "Chưa chọn tệp báo cáo (PDF hoặc DOCX) có chữ ký.")
        ext = kind_of(temp)
        if ext is None:
            raise UploadRefused(415, "Tệp báo cáo phải là PDF hoặc DOCX (Word); tệp đã chọn không phải loại này.")
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return Upload(digest.hexdigest(), clean_name(upload.filename), size, ext, temp)
