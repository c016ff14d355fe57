"""The tree's history and the plans as time intervals, for set-based accrual.

A deal closed at ``t`` joins the interval ``[start, end)`` holding ``t``:

- :func:`chains`: for every partner, the chain above it (itself first) in
  each interval where that chain did not change. A partner's parent at ``t``
  is the ``old_parent`` of its earliest move after ``t``, else its current
  parent; a chain changes when any partner in it moved.
- :func:`plan_versions`: for every partner, the plan version in force in
  each interval (its plan assignment at ``t``, then that plan's latest
  version from at most ``t``).

Intervals are clipped to the run's deals (``lo``..``hi``), so there are
about as many as partners unless partners or plans changed in that time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

FAR_PAST = datetime.min.replace(tzinfo=UTC)
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)

Segment = tuple[datetime, datetime, object]


def _steps(changes: Iterable[tuple[datetime, object]], before: object) -> list[Segment]:
    """``[(start, end, value)]`` of a value that is ``before`` until the first
    change and each change's value from its moment (changes sorted; of two
    at the same moment, the later one holds)."""
    segments: list[Segment] = []
    start, value = FAR_PAST, before
    for moment, new_value in changes:
        if moment > start:
            segments.append((start, moment, value))
        start, value = max(start, moment), new_value
    segments.append((start, FAR_FUTURE, value))
    return segments


def parent_segments(
    current_parent: int | None, moves: list[tuple[datetime, int, int | None]]
) -> list[Segment]:
    """A partner's parent over time from its moves ``(at, id, old_parent)``
    sorted by (at, id): before each move, that move's old parent."""
    segments: list[Segment] = []
    start = FAR_PAST
    for at, _, old_parent in moves:
        if at > start:
            segments.append((start, at, old_parent))
        start = max(start, at)
    segments.append((start, FAR_FUTURE, current_parent))
    return segments


def chains(
    parents: dict[int, int | None],
    moves: dict[int, list[tuple[datetime, int, int | None]]],
    lo: datetime,
    hi: datetime,
) -> dict[int, list[tuple[datetime, datetime, tuple[int, ...]]]]:
    """``{partner: [(start, end, (partner, parent, grandparent, ...))]}`` within [lo, hi)."""
    memo: dict[int, list[tuple[datetime, datetime, tuple[int, ...]]]] = {}
    busy: set[int] = set()

    def of(partner: int) -> list[tuple[datetime, datetime, tuple[int, ...]]]:
        if partner in memo:
            return memo[partner]
        busy.add(partner)
        out: list[tuple[datetime, datetime, tuple[int, ...]]] = []
        for start, end, parent in parent_segments(parents[partner], moves.get(partner, [])):
            start, end = max(start, lo), min(end, hi)
            if start >= end:
                continue
            # A parent already being resolved would be a loop (a consistent
            # history has none): the chain stops there.
            if parent is None or parent not in parents or parent in busy:
                out.append((start, end, (partner,)))
                continue
            for s, e, above in of(parent):
                s, e = max(s, start), min(e, end)
                if s < e:
                    out.append((s, e, (partner, *above)))
        busy.discard(partner)
        memo[partner] = out
        return out

    return {partner: of(partner) for partner in parents}


def plan_versions(
    assignments: dict[int, list[tuple[datetime, int]]],
    versions: dict[int, list[tuple[datetime, int]]],
    lo: datetime,
    hi: datetime,
) -> dict[int, list[tuple[datetime, datetime, int]]]:
    """``{partner: [(start, end, version id)]}`` within [lo, hi), from each
    partner's assignments ``(since, plan)`` and each plan's versions
    ``(effective_from, version)``, both sorted by time then id."""
    out: dict[int, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    plan_steps = {plan: _steps(rows, None) for plan, rows in versions.items()}
    for partner, rows in assignments.items():
        for start, end, plan in _steps(rows, None):
            if plan is None:
                continue
            for v_start, v_end, version in plan_steps.get(plan, ()):
                if version is None:
                    continue
                s, e = max(start, v_start, lo), min(end, v_end, hi)
                if s < e:
                    out[partner].append((s, e, version))
    return out
