"""Compiled templates kept on disk for the next process (the letters' and the report's)."""

from __future__ import annotations

import functools
import pickle

import jinja2


class KeptTemplates(jinja2.FileSystemBytecodeCache):
    """Jinja's ``FileSystemBytecodeCache``, but a help only: a cache file that cannot be read
    (damaged) or written (disk full, folder gone) means compiling again, never a letter that
    cannot be rendered."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError:
            pass  # compiled again by the next process


@functools.lru_cache(maxsize=4)
def compiled_templates(environment: str) -> jinja2.BytecodeCache | None:
    """Templates compiled once per machine, not once per process: every flow run of a worker is
    a new process, which compiled the letters' templates again (≈ 0.25 s a run). Jinja's own
    ``FileSystemBytecodeCache`` in a folder of the user's own under the temporary directory
    (made 0700 and checked by Jinja); an entry is used only for the same template file with the
    same source and the same Python, so an edited template is compiled afresh; ``environment``
    names the Jinja environment (its options shape the code), kept apart in the file names. None
    when no such folder can be had: then each process compiles, as before."""
    try:
        return KeptTemplates(pattern=f"__planflow-{environment}-%s.cache")
    except (RuntimeError, OSError):
        return None
