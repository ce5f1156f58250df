"""Flow runs as the national bench waits for them (``bench/national_prefect.py``): created, found
when an automation started them, followed to their end — and, after a worker was killed, the runs
it held found, set Crashed and run again."""

from __future__ import annotations

import asyncio
import time

from _prefect_cluster import children


class Runs:
    """The flow runs the bench waits for, each read from the server every ``POLL_S`` (34 plans
    polling twice a second cost the server a third of a core). A run lost with a
    killed worker (set Crashed by the server, or Pending for ``PENDING_S``) has its deployment run
    again; :meth:`finished` follows the new run."""

    PENDING_S = 20.0
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

    async def finished(self, run_id, timeout: float = 900):
        """Wait until the run (or the run that replaced it) is over; return it. After a kill, a run
        the server set Crashed (the plan's lost-run automation: no heartbeat for 90 s) or one left
        Pending is run again, as the operator would on the incident letter; otherwise a run that did
        not complete is an error, named with its state's message."""
        deadline = time.monotonic() + timeout
        pending_since = None
        while time.monotonic() < deadline:
            run = await self.client.read_flow_run(run_id)
            kind = run.state.type.value if run.state else "SCHEDULED"
            pending_since = (pending_since or time.monotonic()) if kind == "PENDING" else None
            if self.after_kill and (kind == "CRASHED" or (pending_since and time.monotonic() - pending_since > self.PENDING_S)):
                run_id, pending_since = await self._replace(run), None
            elif kind in self.TERMINAL:
                if kind != "COMPLETED":
                    raise RuntimeError(f"flow run {run.name} ({run_id}): {kind} {run.state.message}")
                return run
            await asyncio.sleep(self.POLL_S)
        raise TimeoutError(f"flow run {run_id} not over after {timeout:.0f} s")

    async def _replace(self, run):
        from prefect.states import Crashed

        state = run.state.type.value
        if state != "CRASHED":  # Pending on the dead worker: no heartbeat ever came, so say it here
            await self.client.set_flow_run_state(run.id, Crashed(message="left Pending by a worker that was lost"),
                                                 force=True)
        new = await self.start(run.deployment_id, run.parameters)
        self.lost.append({"run": run.name, "state": state, "message": run.state.message, "run_again_as": str(new)})
        return new

    async def settled(self, quiet_s: float = 6.0, timeout: float = 300) -> list:
        """Every flow run over and no new one for ``quiet_s`` (automations fire a little after their
        events); return them all."""
        deadline, seen, since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            runs = await self._read()
            open_runs = [r for r in runs if (r.state.type.value if r.state else "SCHEDULED") not in self.TERMINAL]
            if len(runs) != seen or open_runs:
                seen, since = len(runs), time.monotonic()
            elif time.monotonic() - since > quiet_s:
                return runs
            await asyncio.sleep(1)
        raise TimeoutError("flow runs still open after the year")


class Chaos:
    """``--kill-worker``: kill worker 1 once half the plans have started their cycle."""

    def __init__(self, cluster, runs: Runs, plans: int, enabled: bool):
        self.cluster, self.runs, self.half, self.enabled = cluster, runs, max(1, plans // 2), enabled
        self.started, self.killed = 0, None

    async def cycle_started(self) -> None:
        self.started += 1
        if self.enabled and self.killed is None and self.started >= self.half:
            self.killed = {}  # the plans that start meanwhile must not kill it again
            for _ in range(60):  # until it runs something (a flow-run process of its own), 30 s at most
                if children(self.cluster.procs["worker-1"].pid):
                    break
                await asyncio.sleep(0.5)
            self.cluster.sample_memory()
            pids = self.cluster.kill("worker-1")
            self.runs.after_kill = True
            self.killed = {"worker": "worker-1", "after_cycles_started": self.started, "processes_killed": len(pids)}
