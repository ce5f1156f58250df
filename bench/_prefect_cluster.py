"""A Prefect installation for the national bench, on this machine: PostgreSQL databases, a Prefect
server backed by PostgreSQL, a process work pool from ``work-pool.json`` and its workers — each a
real process, started here, bound to 127.0.0.1 and stopped here (``Cluster`` is a context manager).

Every process gets the same environment: its own ``PREFECT_HOME`` in the run's temporary folder,
``PREFECT_API_URL`` of the server, and the planflow settings the flows read from the worker's
environment (``PLANFLOW_DEFINITION``, ``PLANFLOW_DATABASE_URL``, ``PLANFLOW_OUTBOX_DIR``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "planflow"
ADMIN_URL = os.environ.get("PLANFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


@dataclass
class Databases:
    """Two new PostgreSQL databases, the Prefect server's and planflow's store; dropped at the end."""

    prefix: str = field(default_factory=lambda: f"pfbench_{uuid.uuid4().hex[:10]}")

    @property
    def names(self) -> tuple[str, str]:
        return f"{self.prefix}_prefect", f"{self.prefix}_store"

    def url(self, name: str, driver: str) -> str:
        base = ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
        return f"postgresql+{driver}://{base}/{name}"

    def create(self) -> None:
        for name in self.names:
            _admin(f'CREATE DATABASE "{name}"')

    def drop(self) -> None:
        for name in self.names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process and of its live children, summed: MiB."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return round(total, 1)


def children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in children(k)]


class Cluster:
    """The server, the pool and ``workers`` process workers; ``env``: what every process of it runs with."""

    def __init__(self, tmp: Path, definitions: Path, store_url: str, workers: int, limit: int):
        self.tmp, self.definitions, self.workers_n, self.limit = tmp, definitions, workers, limit
        self.dbs = Databases()
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.store_url = store_url or ""
        self.outbox = tmp / "outbox"
        self.env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_API_URL": self.api,
                    "PREFECT_PROFILES_PATH": str(tmp / "prefect-home" / "profiles.toml"),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
                    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
                    "PREFECT_WORKER_QUERY_SECONDS": "1",
                    # the bench fires the schedules at the plan's moments: no runs made ahead for them
                    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PREFECT_WORKER_PREFETCH_SECONDS": "5",
                    # runs send heartbeats, so that a run whose worker is lost is set Crashed
                    # (planflow.flows.serve.lost_run_automation)
                    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
                    "PLANFLOW_DEFINITION": str(definitions), "PLANFLOW_OUTBOX_DIR": str(self.outbox)}
        self.env.pop("PREFECT_PROFILE", None)
        self.procs: dict[str, subprocess.Popen] = {}
        self.peak: dict[str, float] = {}

    def __enter__(self) -> "Cluster":
        self.dbs.create()
        prefect_db, store_db = self.dbs.names
        self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.dbs.url(prefect_db, "asyncpg")
        if not self.store_url:
            self.store_url = self.dbs.url(store_db, "psycopg")
        self.env["PLANFLOW_DATABASE_URL"] = self.store_url
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("PREFECT_", "PLANFLOW_"))})
        self._start("server", [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)])
        self._wait_healthy(120)
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.procs):
            self.stop(name)
        from planflow import store

        store.dispose(self.store_url)
        self.dbs.drop()

    # --- processes -------------------------------------------------------------------------
    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115 - kept open while the process runs
        self.procs[name] = subprocess.Popen(cmd, env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def _wait_healthy(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            if self.procs["server"].poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{self.tail('server')}")
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {self.api}/health after {timeout:.0f} s:\n{self.tail('server')}")
            time.sleep(0.3)

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start_workers(self) -> None:
        for i in range(1, self.workers_n + 1):
            self._start(f"worker-{i}", [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process",
                                        "--name", f"bench-worker-{i}", "--limit", str(self.limit)])

    def sample_memory(self) -> None:
        """Keep each process's peak (its own VmHWM plus its live flow-run children's)."""
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.peak[name] = max(self.peak.get(name, 0.0), rss_mib(proc.pid))

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of each live process, its finished children included (a worker's
        flow-run processes): /proc's utime + stime + cutime + cstime."""
        tick, out = os.sysconf("SC_CLK_TCK"), {}
        for name, proc in self.procs.items():
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[name] = round(sum(int(f) for f in fields[11:15]) / tick, 1)
        return out

    def kill(self, name: str) -> list[int]:
        """SIGKILL a worker and every process it started: a machine lost mid-year.
        Return the pids killed."""
        proc = self.procs[name]
        pids = [proc.pid, *children(proc.pid)]
        for pid in pids:  # one by one: a worker may start its flow runs in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        return pids

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
