"""OrderRefs never reused across sessions, and returns recognised by either key, also those of
an earlier session's orders after a restart (docs/ctp-trading.md, "Order identity")."""

from __future__ import annotations

import pytest

from services.engine.adapters.ctp.identity import Identity, Route


def test_refs_are_above_max_order_ref_and_above_every_ref_recorded() -> None:
    ids = Identity()
    ids.login(1, 100, "   41")  # CTP pads it
    assert [ids.route(f"o{i}").order_ref for i in range(3)] == [42, 43, 44]
    # a restart: a new session whose MaxOrderRef is lower than the refs the journal holds
    again = Identity()
    for order_id, route in ids.routes.items():
        again.record(order_id, route)  # read back from the journal
    again.login(1, 101, "12")
    assert again.route("o3") == Route(1, 101, 45)
    # and a MaxOrderRef above them all wins
    third = Identity()
    third.record("o0", Route(1, 100, 42))
    third.login(2, 7, "900")
    assert third.route("o1").order_ref == 901


def test_returns_of_this_and_an_earlier_session_are_recognised() -> None:
    ids = Identity()
    ids.login(1, 100, "")
    first = ids.route("o1")
    assert first.order_ref == 1
    ids.numbered("o1", "SHFE", "   5551")
    ids.login(3, 200, "1")  # reconnected: a new session
    second = ids.route("o2")
    assert ids.order_of(1, 100, "1", "SHFE", "") == "o1"  # the earlier session's own key
    assert ids.order_of(9, 9, "77", "SHFE", "5551") == "o1"  # by the exchange's number
    assert ids.order_of(3, 200, f"{second.order_ref:>12}", "SHFE", "") == "o2"
    assert ids.order_of(3, 200, "1", "SHFE", "") is None  # same ref, other session: not ours
    assert ids.order_of(1, 100, "", "DCE", "5551") is None  # another exchange's number
    assert ids.order_of_trade("SHFE", "5551 ") == "o1"
    assert ids.order_of_trade("SHFE", "9") is None  # an external order's trade


def test_no_route_before_a_login_and_a_bad_max_order_ref() -> None:
    with pytest.raises(RuntimeError, match="before the login"):
        Identity().route("o1")
    with pytest.raises(ValueError, match="MaxOrderRef 'x1' is not a number"):
        Identity().login(1, 1, "x1")
