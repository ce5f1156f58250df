"""The rules of a process's flow graph: every element is reached, every loop has a way out,
every join can complete.

They run on a process only when nothing else is wrong with the definition (a graph with an
unknown target or two starts has no meaning to walk). Each walks the graph a fixed number
of times, so checking takes time in proportion to the size of the process.
"""

from __future__ import annotations

from collections import deque

from planflow.definition_rules import Problems, RuleContext
from planflow.model import Element, Process
from planflow.problems import listed


def every_element_is_reachable(proc: Process, ctx: RuleContext) -> Problems:
    start = proc.start
    reached = {start.id} | downstream(proc, start.id)
    for e in proc.elements:
        if e.id not in reached:
            yield ctx.problem(e, f"unreachable: no path from '{start.id}' leads here")


def every_loop_has_a_way_out(proc: Process, ctx: RuleContext) -> Problems:
    """A loop that no flow leaves (and with no endEvent in it) keeps its token forever: the
    process can never end. Said once per loop, at its first element in the file."""
    component = components(proc)
    leaves: dict[int, bool] = {}
    members: dict[int, list[str]] = {}
    for e in proc.elements:
        c = component[e.id]
        members.setdefault(c, []).append(e.id)
        leaves[c] = leaves.get(c, False) or e.type == "endEvent" or any(component[t] != c for t in e.targets())
    reported = set()
    for e in proc.elements:
        c = component[e.id]
        if leaves[c] or c in reported or (len(members[c]) == 1 and e.id not in e.targets()):
            continue  # an element alone with no flow out is refused by leads_somewhere
        reported.add(c)
        yield ctx.problem(e, f"loop with no way out: {listed(members[c])} lead only to each other, so a token "
                             "that enters never leaves and the process never ends; give one of them a flow "
                             "out of the loop (e.g. a gateway's default)")


def joins_can_complete(proc: Process, ctx: RuleContext) -> Problems:
    """A parallel join gets all its tokens: none comes from after the join, none from
    branches of one exclusive split (which takes only one of them)."""
    preds = predecessors(proc)
    component = components(proc)
    for e in proc.elements:
        if e.type != "parallelGateway" or len(preds[e.id]) <= 1:
            continue
        # a flow into the join from an element the join itself leads to: both are on one loop
        loops = sorted({src for src, _ in preds[e.id] if component[src] == component[e.id]})
        if loops:
            yield ctx.problem(
                e, f"this join waits for {len(preds[e.id])} tokens, but the flow from "
                   f"{listed(loops)} can only arrive after the join itself has fired: the join can "
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
                join, f"this join waits for {len(preds[join.id])} tokens, but branches "
                      f"{listed(sorted(branches))} leave exclusive gateway '{split}', which "
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


def components(proc: Process) -> dict[str, int]:
    """Element id -> its strongly connected component (elements on one loop share one).

    Tarjan's algorithm without recursion, so a process of any length is walked in one pass.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    component: dict[str, int] = {}
    stack: list[str] = []
    for root in proc.elements:
        if root.id in index:
            continue
        work = [(root.id, iter(proc.element(root.id).targets()))]
        index[root.id] = low[root.id] = len(index)
        stack.append(root.id)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    work.append((target, iter(proc.element(target).targets())))
                elif target not in component:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    component[member] = index[node]
                    if member == node:
                        break
    return component


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
