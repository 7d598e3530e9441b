"""Properties: any delivery order of a referral's events gives its ordered state, or
refuses the events it cannot place; redeliveries never change anything.

Events come from two institutions' topics, which nothing orders, so an event may
arrive before the one it follows: it waits for it rather than being refused.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts import lifecycle
from services.referrals.machine import Referral, Transition, apply
from services.referrals.store import APPLIED, Store
from tests.unit.referrals.support import RECEIVING, START, event

# status -> the events its parties may publish from it, and the status each leaves
MOVES = {
    "SENT": ("REVOKED", "REASSIGNED", "ACCEPTED", "REJECTED", "APPOINTMENT_SCHEDULED"),
    "ACCEPTED": (
        "REVOKED",
        "REASSIGNED",
        "ACCEPTED",
        "APPOINTMENT_SCHEDULED",
        "SERVICE_STARTED",
        "COMPLETED",
    ),
    "IN_SERVICE": ("REVOKED", "REASSIGNED", "COMPLETED"),
}
RECEIVERS = ("conapina", "minsal", "pgr", "mtps")


@st.composite
def lifecycles(draw: st.DrawFn) -> list[Transition]:
    """A referral's events in the order they happened, an hour apart."""
    events = [event("CREATED", None)]
    status, receiving = "SENT", RECEIVING
    for hour in range(1, draw(st.integers(0, 7)) + 1):
        if status in lifecycle.TERMINAL:
            break
        name = draw(st.sampled_from(MOVES[status]))
        if name == "REASSIGNED":
            receiving = draw(st.sampled_from([r for r in RECEIVERS if r != receiving]))
        step = event(name, status, receiving=receiving, at=START + timedelta(hours=hour))
        events.append(step)
        status = step.status
    return events


def fold(events: list[Transition]) -> Referral | None:
    referral = None
    for step in events:
        referral = apply(referral, step)
    return referral


@contextlib.contextmanager
def run(events: list[Transition]) -> Iterator[Store]:
    """A fresh database file that has read ``events`` in this order."""
    with tempfile.TemporaryDirectory(prefix="referrals-") as folder:
        store = Store.open(Path(folder) / "t.sqlite")
        try:
            store.apply(events)
            yield store
        finally:
            store.close()


def state(store: Store) -> Referral | None:
    tracked = store.get("r-1")
    return None if tracked is None else tracked.referral


@settings(max_examples=300, deadline=None)
@given(lifecycles(), st.data())
def test_a_shuffled_and_duplicated_delivery_ends_in_the_ordered_state_or_refuses(
    ordered: list[Transition], data: st.DataObject
) -> None:
    copies = data.draw(st.lists(st.sampled_from(ordered), max_size=len(ordered)))
    delivered = data.draw(st.permutations([*ordered, *copies]))
    with run(delivered) as store:
        history, waiting = store.history("r-1"), store.waiting("r-1")
        refused = [s for s in history if s.outcome != APPLIED]
        # every event once, whatever the copies: applied, refused, or still waiting
        assert len(history) + len(waiting) == len(ordered)
        if not refused:
            # events that came before the ones they follow waited for them
            assert waiting == []
            assert state(store) == fold(ordered)
        # either way, the state is exactly what its own applied history gives
        by_id = {e.event_id: e for e in ordered}
        applied = [by_id[s.event_id] for s in history if s.outcome == APPLIED]
        assert state(store) == fold(applied)


@settings(max_examples=300, deadline=None)
@given(lifecycles(), st.data())
def test_redeliveries_in_order_end_in_the_ordered_state(
    ordered: list[Transition], data: st.DataObject
) -> None:
    # each event may come again at any later point, as after a crash before a commit
    delivered: list[Transition] = []
    for index, step in enumerate(ordered):
        delivered.append(step)
        again = data.draw(st.lists(st.sampled_from(ordered[: index + 1]), max_size=2))
        delivered.extend(again)
    with run(delivered) as store:
        assert state(store) == fold(ordered)
        assert all(s.outcome == APPLIED for s in store.history("r-1"))
