"""The rules of a process's flow graph: every element is reached, every join can complete.

They run on a process only when nothing else is wrong with the definition (a graph with an
unknown target or two starts has no meaning to walk).
"""

from __future__ import annotations

from collections import deque

from planflow.definition_rules import Problems, RuleContext
from planflow.model import Element, Process


def every_element_is_reachable(proc: Process, ctx: RuleContext) -> Problems:
    start = proc.start
    reached = {start.id} | downstream(proc, start.id)
    for e in proc.elements:
        if e.id not in reached:
            yield ctx.problem(e, f"unreachable: no path from '{start.id}' leads here")


def joins_can_complete(proc: Process, ctx: RuleContext) -> Problems:
    """A parallel join gets all its tokens: none comes from after the join, none from
    branches of one exclusive split (which takes only one of them)."""
    preds = predecessors(proc)
    for e in proc.elements:
        if e.type != "parallelGateway" or proc.incoming(e.id) <= 1:
            continue
        after = downstream(proc, e.id)
        loops = sorted({src for src, _ in preds[e.id] if src in after})
        if loops:
            yield ctx.problem(
                e, f"this join waits for {proc.incoming(e.id)} tokens, but the flow from "
                   f"{', '.join(loops)} can only arrive after the join itself has fired: the join can "
                   "never complete. Lead that flow to an element after the join.")
            continue
        yield from _exclusive_branches_joined(proc, e, preds, ctx)


def _exclusive_branches_joined(proc: Process, join: Element, preds: dict, ctx: RuleContext) -> Problems:
    by_split: dict[str, set[str]] = {}
    for src, dst in preds[join.id]:
        split, branch = split_of(proc, preds, src, dst)
        by_split.setdefault(split, set()).add(branch)
    for split, branches in by_split.items():
        if proc.element(split).type == "exclusiveGateway" and len(branches) > 1:
            yield ctx.problem(
                join, f"this join waits for {proc.incoming(join.id)} tokens, but branches "
                      f"{', '.join(sorted(branches))} leave exclusive gateway '{split}', which "
                      "takes only one of them: the join can never complete. Join them with an "
                      "exclusiveGateway, or split with a parallelGateway.")


# --- walking the graph -----------------------------------------------------------------


def predecessors(proc: Process) -> dict[str, list[tuple[str, str]]]:
    """Element id -> the flows (source, target) that lead into it."""
    preds: dict[str, list[tuple[str, str]]] = {e.id: [] for e in proc.elements}
    for e in proc.elements:
        for t in e.targets():
            preds[t].append((e.id, t))
    return preds


def downstream(proc: Process, start_id: str) -> set[str]:
    """Every element a token leaving ``start_id`` can reach (itself only through a loop)."""
    seen: set[str] = set()
    queue = deque(proc.element(start_id).targets())
    while queue:
        node = queue.popleft()
        if node not in seen:
            seen.add(node)
            queue.extend(proc.element(node).targets())
    return seen


def split_of(proc: Process, preds: dict, edge_src: str, edge_dst: str) -> tuple[str, str]:
    """Walk back from an incoming flow to the split it leaves: (split id, branch)."""
    src, branch, seen = edge_src, edge_dst, set()
    while src not in seen:
        seen.add(src)
        if len(proc.element(src).targets()) > 1 or len(preds[src]) != 1:
            return src, branch
        branch = src
        src = preds[src][0][0]
    return src, branch
