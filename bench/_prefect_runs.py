"""Flow runs as the national bench waits for them (``bench/national_prefect.py``): created, found
when an automation started them, followed to their end — and, after a worker was killed, the runs
it held found, set Crashed and run again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from _prefect_cluster import children


class Runs:
    """The flow runs the bench waits for, each read from the server every ``POLL_S`` (34 plans
    polling twice a second cost the server a third of a core). A run lost with a
    killed worker (set Crashed by the server, or Pending for ``PENDING_S``) has its deployment run
    again; :meth:`finished` follows the new run."""

    PENDING_S = 20.0
    SILENT_S = 150.0  # Running, its process gone, and not set Crashed by the lost-run automation (90 s)
    POLL_S = 2.0
    TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

    def __init__(self, client):
        self.client, self.lost, self.after_kill = client, [], False
        self.created = 0

    async def _read(self, **filters) -> list:
        from prefect.client.schemas.filters import FlowRunFilter

        out, offset = [], 0
        while True:
            page = await self.client.read_flow_runs(flow_run_filter=FlowRunFilter(**filters), limit=200, offset=offset)
            out += page
            if len(page) < 200:
                return out
            offset += 200

    async def ids_of(self, deployment_id) -> set:
        from prefect.client.schemas.filters import FlowRunFilterDeploymentId

        return {r.id for r in await self._read(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))}

    async def start(self, deployment_id, parameters: dict | None = None):
        run = await self.client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        self.created += 1
        return run.id

    async def new_of(self, deployment_id, known: set, timeout: float = 300):
        """The id of the first run of ``deployment_id`` not in ``known`` (one an automation started)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = await self.ids_of(deployment_id) - known
            if new:
                return sorted(new)[0]
            await asyncio.sleep(self.POLL_S)
        raise TimeoutError(f"no new run of deployment {deployment_id} after {timeout:.0f} s")

    async def finished(self, run_id, timeout: float = 1800):
        """Wait until the run (or the run that replaced it) is over; return it. After a kill, a run
        the server set Crashed (the plan's lost-run automation: no heartbeat for 90 s) is run again,
        as the operator would on the incident letter; so is one the automation cannot see, which
        sent no heartbeat before its worker died — Pending (``PENDING_S``) or Running (``SILENT_S``)
        with no flow-run process of it left on this machine — after the bench sets it Crashed.
        Otherwise a run that did not complete is an error, named with its state's message."""
        deadline, orphans = time.monotonic() + timeout, {}
        while time.monotonic() < deadline:
            run = await self.client.read_flow_run(run_id)
            kind = run.state.type.value if run.state else "SCHEDULED"
            if self.after_kill and (kind == "CRASHED" or self._orphaned(run, orphans)):
                run_id = await self._replace(run)
            elif kind in self.TERMINAL:
                if kind != "COMPLETED":
                    raise RuntimeError(f"flow run {run.name} ({run_id}): {kind} {run.state.message}")
                return run
            await asyncio.sleep(self.POLL_S)
        raise TimeoutError(f"flow run {run_id} not over after {timeout:.0f} s")

    async def _replace(self, run):
        from prefect.states import Crashed

        state = run.state.type.value
        if state != "CRASHED":  # no heartbeat ever reached the server: the automation cannot tell
            await self.client.set_flow_run_state(run.id, Crashed(message=f"left {state} by a worker that was lost"),
                                                 force=True)
        new = await self.start(run.deployment_id, run.parameters)
        self.lost.append({"run": run.name, "state": state, "message": run.state.message, "run_again_as": str(new)})
        return new

    async def _recover(self, open_runs: list, orphans: dict) -> None:
        """After a kill, a run of a deployment nobody waits for (an automation started it) that the
        dead worker held — no live process carries it, Pending ``PENDING_S`` or Running ``SILENT_S`` —
        is replaced as :meth:`finished` replaces one. ``orphans``: run id -> when first seen so."""
        for r in open_runs:
            if r.deployment_id is not None and self._orphaned(r, orphans):
                await self._replace(r)

    def _orphaned(self, run, orphans: dict) -> bool:
        """Has ``run`` been Pending ``PENDING_S`` or Running ``SILENT_S`` with no live process
        carrying it? ``orphans``: run id -> when first seen so (updated; forgotten once answered)."""
        kind = run.state.type.value if run.state else "SCHEDULED"
        if kind not in ("PENDING", "RUNNING") or str(run.id) in live_runs():
            orphans.pop(run.id, None)
            return False
        now = time.monotonic()
        if now - orphans.setdefault(run.id, now) > (self.PENDING_S if kind == "PENDING" else self.SILENT_S):
            orphans.pop(run.id)
            return True
        return False

    async def settled(self, quiet_s: float = 6.0, timeout: float = 300) -> list:
        """Every flow run over and no new one for ``quiet_s`` (automations fire a little after their
        events); return them all."""
        deadline, seen, since, orphans = time.monotonic() + timeout, -1, time.monotonic(), {}
        while time.monotonic() < deadline:
            runs = await self._read()
            open_runs = [r for r in runs if (r.state.type.value if r.state else "SCHEDULED") not in self.TERMINAL]
            if self.after_kill:
                await self._recover(open_runs, orphans)
            if len(runs) != seen or open_runs:
                seen, since = len(runs), time.monotonic()
            elif time.monotonic() - since > quiet_s:
                return runs
            await asyncio.sleep(1)
        raise TimeoutError("flow runs still open after the year: " + "; ".join(
            f"{r.name} {r.state.type.value if r.state else 'SCHEDULED'}" for r in open_runs[:10]))


class Chaos:
    """``--kill-worker``: kill worker 1 once half the plans have started their cycle and one of its
    runs is Running."""

    def __init__(self, cluster, runs: Runs, plans: int, enabled: bool):
        self.cluster, self.runs, self.half, self.enabled = cluster, runs, max(1, plans // 2), enabled
        self.started, self.killed = 0, None

    async def cycle_started(self) -> None:
        self.started += 1
        if self.enabled and self.killed is None and self.started >= self.half:
            self.killed = {}  # the plans that start meanwhile must not kill it again
            await self._worker_busy(self.cluster.procs["worker-1"].pid)
            self.cluster.sample_memory()
            pids = self.cluster.kill("worker-1")
            self.runs.after_kill = True
            self.killed = {"worker": "worker-1", "after_cycles_started": self.started, "processes_killed": len(pids)}

    async def _worker_busy(self, pid: int, running_s: float = 5.0, at_most_s: float = 120.0) -> None:
        """Until a flow run held by the worker has been Running ``running_s`` (it has sent its first
        heartbeat, so the plan's lost-run automation can see it stop), ``at_most_s`` at the most."""
        deadline = time.monotonic() + at_most_s
        while time.monotonic() < deadline:
            for run_id in {run_of(p) for p in children(pid)} - {None}:
                run = await self.runs.client.read_flow_run(run_id)
                if run.state and run.state.type.value == "RUNNING" and run.state.timestamp is not None \
                        and (time.time() - run.state.timestamp.timestamp()) >= running_s:
                    return
            await asyncio.sleep(0.5)


def run_of(pid: int) -> str | None:
    """The flow-run id a process runs (``PREFECT__FLOW_RUN_ID`` in its environment), if any."""
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    at = data.find(b"PREFECT__FLOW_RUN_ID=")
    if at < 0:
        return None
    end = data.find(b"\0", at)
    return data[at + 21:end if end >= 0 else None].decode()


_LIVE: dict = {"at": 0.0, "ids": set()}


def live_runs() -> set[str]:
    """The flow-run ids of the flow-run processes alive on this machine (``PREFECT__FLOW_RUN_ID`` in
    a process's environment, as a process worker starts it), read at most once a second."""
    if time.monotonic() - _LIVE["at"] > 1.0:
        ids = {run_of(int(d.name)) for d in Path("/proc").glob("[0-9]*")} - {None}
        _LIVE.update(at=time.monotonic(), ids=ids)
    return _LIVE["ids"]
