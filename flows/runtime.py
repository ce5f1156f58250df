"""What a flow needs to reach the engine: a serializable reference and a per-process cache;
and, for ``simulate``, a Prefect API server of its own that dies with it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, field_serializer

from planflow import Engine, connect
from planflow.plan_versions import plan_for, started_version
from planflow.status import masked_url


class RunRef(BaseModel):
    """Everything a Prefect task needs to find its plan instance (small, JSON-safe)."""

    definition: str
    db_url: str
    root_key: str = ""  # empty: every instance of the definition in the store
    outbox_dir: str = "out/outbox"

    @field_serializer("db_url", when_used="json")
    def db_url_shown(self, url: str) -> str:
        """Prefect keeps a flow run's parameters: they show the store's URL masked. (Flows are
        called in process with the reference itself; nothing reads the URL back from them.)"""
        return masked_url(url)


@lru_cache(maxsize=8)
def _engine(definition: str, db_url: str, root_key: str, mtime: float, started_on: str | None) -> Engine:
    db = connect(db_url)
    return Engine(plan_for(db, root_key, definition), db)


def engine_for(ref: RunRef) -> Engine:
    """The engine of the run's instance, on the version of the definition it started with
    (a running year keeps its definition; the file's plan before it starts)."""
    path = Path(ref.definition)
    return _engine(str(path.resolve()), ref.db_url, ref.root_key, os.path.getmtime(path),
                   started_version(connect(ref.db_url), ref.root_key))


def root_id(ref: RunRef) -> int | None:
    """The plan instance a run is about; None (every instance) when ``root_key`` is empty."""
    if not ref.root_key:
        return None
    iid = engine_for(ref).instance_id(ref.root_key)
    if iid is None:
        raise LookupError(f"no plan instance '{ref.root_key}' in {masked_url(ref.db_url)}")
    return iid


def prefect_defaults() -> None:
    """Settings planflow needs from Prefect, unless the operator set them already."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS", "false")


def private_prefect_home(home: Path) -> None:
    """Run Prefect from ``home`` (its ephemeral API, database and profiles), not from the
    user's ``~/.prefect`` or active profile. Call before Prefect is imported."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home.resolve())
    os.environ["PREFECT_PROFILES_PATH"] = str(home.resolve() / "profiles.toml")
    os.environ.pop("PREFECT_PROFILE", None)


# Run in the server's process before it becomes the server: ask the kernel to SIGKILL it
# when its parent (the planflow process) dies, kill -9 included (Linux PR_SET_PDEATHSIG,
# kept across exec); if the parent died already, go. Then exec the server itself.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


class ServerError(RuntimeError):
    """simulate's own Prefect API server did not start."""


@contextlib.contextmanager
def own_api_server(timeout_s: float | None = None) -> Iterator[str | None]:
    """A Prefect API server on 127.0.0.1 for this process alone, ``PREFECT_API_URL`` set to
    it while the block runs; stopped at the end, and killed by the kernel if this process
    dies first (``kill -9``): Prefect's own ephemeral server outlives a killed client.

    Call before Prefect is imported (its settings are read then), after ``PREFECT_HOME``
    and ``prefect_defaults``. Yields None where the kernel cannot tie the server's life to
    ours (not Linux): Prefect then starts its ephemeral server as usual.
    """
    if not sys.platform.startswith("linux"):
        yield None
        return
    timeout_s = timeout_s or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"))
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), sys.executable, "-m", "uvicorn",
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL)
    try:
        started = time.monotonic()
        while not _healthy(url):
            if server.poll() is not None:
                raise ServerError(f"the Prefect API server exited with code {server.returncode} while starting")
            if time.monotonic() - started > timeout_s:
                raise ServerError(f"the Prefect API server did not answer on {url} within {timeout_s:.0f} s")
            time.sleep(0.1)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
