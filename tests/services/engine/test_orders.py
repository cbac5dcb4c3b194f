"""The order state machine: the table is the only way to move, fills are exact, ids survive."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engine.orders import (
    LATE_ACCEPT,
    TERMINAL,
    TRANSITIONS,
    Event,
    InvalidTransition,
    Order,
    OrderIds,
    Overfill,
    State,
)


def order(volume: int = 5) -> Order:
    return Order("a-20210104-1", "a", "rb2105", "buy", "open", 4300.0, volume)


events = st.lists(
    st.tuples(
        st.sampled_from(list(Event)),
        st.integers(1, 7),  # fill volume
        st.integers(0, 6),  # trade id: small range, so duplicates happen
    ),
    max_size=40,
)


@given(events, st.integers(1, 10))
def test_any_event_sequence_stays_inside_the_table(
    seq: list[tuple[Event, int, int]], volume: int
) -> None:
    o = order(volume)
    applied: dict[str, int] = {}
    for event, lots, tid in seq:
        before = (o.state, o.filled, set(o.trade_ids))
        trade_id = f"t{tid}"
        try:
            changed = o.apply(event, trade_id=trade_id, volume=lots, price=4300.0)
        except (InvalidTransition, Overfill):
            assert (o.state, o.filled, o.trade_ids) == before  # refused: nothing changed
            continue
        if event is Event.FILL and changed:
            applied[trade_id] = lots
        if event is Event.FILL and not changed:
            assert trade_id in before[2]  # only a duplicate trade id is ignored
        if event is Event.ACCEPT and not changed:
            assert before[0] in LATE_ACCEPT  # a late acknowledgement changes nothing
            assert (o.state, o.filled, o.trade_ids) == before
        assert o.state in TRANSITIONS
        assert 0 <= o.filled <= o.volume
        assert o.filled == sum(applied.values())
        assert (o.state is State.FILLED) == (o.filled == o.volume)
        if before[0] in TERMINAL:
            assert o.state == before[0]


def test_fill_after_cancel_request_is_applied() -> None:
    o = order(5)
    o.apply(Event.SUBMIT)
    o.apply(Event.ACCEPT)
    o.apply(Event.CANCEL_REQUEST)
    assert o.apply(Event.FILL, trade_id="t1", volume=2, price=4301.0)
    assert (o.state, o.filled) == (State.PENDING_CANCEL, 2)
    o.apply(Event.CANCELLED)
    assert o.state is State.CANCELLED and o.filled == 2
    assert o.average_fill_price == 4301.0


def test_last_lot_filled_while_cancel_pending_ends_filled() -> None:
    o = order(2)
    for event in (Event.SUBMIT, Event.ACCEPT, Event.CANCEL_REQUEST):
        o.apply(event)
    o.apply(Event.FILL, trade_id="t1", volume=2, price=1.0)
    assert o.state is State.FILLED
    with pytest.raises(InvalidTransition):
        o.apply(Event.CANCELLED)


def test_refused_cancel_returns_to_the_state_before() -> None:
    o = order(5)
    for event in (Event.SUBMIT, Event.ACCEPT, Event.CANCEL_REQUEST):
        o.apply(event)
    o.apply(Event.FILL, trade_id="t1", volume=1, price=1.0)
    o.apply(Event.CANCEL_REFUSED, reason="order already traded")
    assert o.state is State.PARTIALLY_FILLED
    assert o.reason == "order already traded"


def test_an_order_whose_cancel_is_pending_may_still_be_rejected() -> None:
    """The agent cancelled before the answer came, and the answer is a refusal (CTP's front, or
    no session trading): the order ends rejected, not stuck waiting for its cancel."""
    o = order(5)
    for event in (Event.SUBMIT, Event.CANCEL_REQUEST):
        o.apply(event)
    o.apply(Event.REJECT, reason="DISCONNECTED: the order did not leave")
    assert o.state is State.REJECTED and not o.active


def test_duplicate_trade_id_is_ignored_and_overfill_refused() -> None:
    o = order(3)
    o.apply(Event.SUBMIT)
    assert o.apply(Event.FILL, trade_id="t1", volume=2, price=1.0)
    assert not o.apply(Event.FILL, trade_id="t1", volume=2, price=1.0)
    assert o.filled == 2
    with pytest.raises(Overfill, match=r"fill of 2 \(trade t2\) exceeds the 1 lots remaining of 3"):
        o.apply(Event.FILL, trade_id="t2", volume=2, price=1.0)
    assert o.filled == 2 and o.state is State.PARTIALLY_FILLED


def test_invalid_transition_names_the_event_and_state() -> None:
    o = order()
    with pytest.raises(InvalidTransition, match="accept is not allowed in created"):
        o.apply(Event.ACCEPT)


def test_order_ids_are_deterministic_and_survive_a_restart() -> None:
    ids = OrderIds()
    issued = [ids.issue("mm", 20210104) for _ in range(3)]
    assert issued == ["mm-20210104-1", "mm-20210104-2", "mm-20210104-3"]
    assert ids.issue("mm", 20210105) == "mm-20210105-1"
    restarted = OrderIds()
    for order_id in issued:
        restarted.seen(order_id)
    assert restarted.issue("mm", 20210104) == "mm-20210104-4"
    assert OrderIds().issue("trend-if", 20210104) == "trend-if-20210104-1"


@pytest.mark.parametrize("before", ["partly filled", "filled", "cancelled", "accepted"])
def test_an_acknowledgement_after_fills_or_a_cancel_changes_nothing(before: str) -> None:
    """CTP's OnRtnOrder may come after OnRtnTrade; the simulator's random latencies likewise."""
    o = order(3)
    o.apply(Event.SUBMIT)
    if before == "accepted":
        o.apply(Event.ACCEPT)
    elif before == "cancelled":
        o.apply(Event.CANCEL_REQUEST)
        o.apply(Event.CANCELLED)
    else:
        o.apply(Event.FILL, trade_id="t1", volume=1 if before == "partly filled" else 3,
                price=4300.0)  # fmt: skip
    state, filled = o.state, o.filled
    assert not o.apply(Event.ACCEPT)
    assert (o.state, o.filled) == (state, filled)


def test_an_acknowledgement_of_a_rejected_order_is_still_refused() -> None:
    o = order()
    o.apply(Event.SUBMIT)
    o.apply(Event.REJECT)
    with pytest.raises(InvalidTransition, match="accept is not allowed in rejected"):
        o.apply(Event.ACCEPT)
