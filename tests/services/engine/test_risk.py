"""Risk gate: every rule trips on what it should refuse and lets through what it should allow."""

from __future__ import annotations

import math

import pytest

from contracts.calendar import load_calendar
from contracts.config import RiskConfig
from libshm import Tick, book_tick
from services.engine.ledger import Ledger, Rates, Spec
from services.engine.orders import Order, State
from services.engine.risk import HALTED, REDUCING, RiskGate, RiskLimits

SEC = 1_000_000_000
MS = 1_000_000
# 2021-01-04 10:00:00 China time (02:00 UTC), inside IF's morning section
T0 = 1_609_725_600 * SEC
IF = Spec("IF2101", "CFFEX", 300, 0.2, Rates(margin_rate=0.12))
CALENDAR = load_calendar()
IF_PHASES = CALENDAR.phase_table(CALENDAR.product("IF2101"))  # type: ignore[arg-type]


def quote(last: float = 5000.0) -> Tick:
    return book_tick("IF2101", "CFFEX", 20210104, T0, last=last, bid=last - 0.2, ask=last + 0.2,
                     upper=5500.0, lower=4500.0)  # fmt: skip


def make_gate(**risk: object) -> RiskGate:
    config = RiskConfig(**risk)  # type: ignore[arg-type]
    ledger = Ledger()
    gate = RiskGate(config, ledger)
    for agent in ("a", "b"):
        ledger.open_account(agent, 1_000_000.0)
        gate.add_agent(agent, RiskLimits.from_config(config))
    return gate


_ids = iter(range(10**9))


def order(direction: str = "buy", price: float = 5000.0, volume: int = 1, *, agent: str = "a",
          offset: str = "open", kind: str = "limit") -> Order:  # fmt: skip
    return Order(f"{agent}-1-{next(_ids)}", agent, "IF2101", direction, offset, price, volume, kind)


def check(
    gate: RiskGate, o: Order, *, now: int = T0, q: Tick | None = None,
    working: list[Order] | None = None, pending: tuple[int, int] = (0, 0),
) -> str | None:  # fmt: skip
    refusal = gate.check_order(
        o, IF, q or quote(), pending_open=pending, working=working or [], now_ns=now,
        phases=IF_PHASES,
    )  # fmt: skip
    return None if refusal is None else refusal[0]


def test_a_plain_order_passes() -> None:
    assert check(make_gate(), order()) is None


def test_states_halt_and_reducing_per_scope() -> None:
    gate = make_gate()
    scopes = (("global", ""), ("account", ""), ("agent", "a"), ("instrument", "IF2101"))
    for scope, target in scopes:
        gate.set_state(scope, target, HALTED)
        assert check(gate, order()) == "HALTED"
        assert check(gate, order(offset="close")) == "HALTED"
        gate.set_state(scope, target, REDUCING)
        assert check(gate, order()) == "REDUCING_ONLY"
        assert check(gate, order(offset="close")) is None
        gate.set_state(scope, target, "active")
        assert check(gate, order()) is None
    gate.set_state("agent", "b", HALTED)
    assert check(gate, order()) is None  # another agent's state


def test_max_order_volume() -> None:
    gate = make_gate(max_order_volume=3)
    assert check(gate, order(volume=3)) is None
    assert check(gate, order(volume=4)) == "MAX_ORDER_VOLUME"


def test_trading_hours() -> None:
    gate = make_gate()
    assert check(gate, order(), now=T0 + 30 * 60 * SEC) is None  # 10:30 by the exchange clock
    lunch = T0 + 90 * 60 * SEC  # 11:30: the exchange clock is the last tick's time plus the wait
    assert check(gate, order(), now=lunch + SEC) == "TRADING_HOURS"
    assert check(make_gate(trading_hours=False), order(), now=lunch + SEC) is None


def test_price_tick_limit_and_band() -> None:
    gate = make_gate(price_band=0.02)
    assert check(gate, order(price=5000.1)) == "PRICE_TICK"
    assert check(gate, order(price=math.nan)) == "PRICE_TICK"
    assert check(gate, order(price=5000.2)) is None
    assert check(gate, order(price=5500.2)) == "PRICE_LIMIT"
    assert check(gate, order(price=4499.8)) == "PRICE_LIMIT"
    assert check(gate, order(price=5100.2)) == "PRICE_BAND"  # 2% of 5000 is 100
    assert check(gate, order(price=5100.0)) is None
    assert check(gate, order(price=0.0, kind="market")) is None  # market orders have no price


def test_order_rate_sliding_window_per_agent_and_account() -> None:
    gate = make_gate(max_orders_per_second=3, account_orders_per_second=5, duplicate_window_ms=0)
    for i in range(3):
        o = order()
        assert check(gate, o, now=T0 + i * MS) is None
        gate.order_sent(o, T0 + i * MS)
    assert check(gate, order(), now=T0 + 500 * MS) == "ORDER_RATE"
    for i in range(2):
        o = order(agent="b")
        gate.order_sent(o, T0 + 600 * MS + i)
    assert check(gate, order(agent="b"), now=T0 + 700 * MS) == "ORDER_RATE"  # account: 5
    assert check(gate, order(), now=T0 + SEC + 1) is None  # the first left the window


def test_duplicate_guard() -> None:
    gate = make_gate(duplicate_window_ms=100)
    first = order()
    gate.order_sent(first, T0)
    assert check(gate, order(), now=T0 + 50 * MS) == "DUPLICATE"
    assert check(gate, order(price=4999.8), now=T0 + 50 * MS) is None
    assert check(gate, order(volume=2), now=T0 + 50 * MS) is None
    assert check(gate, order(agent="b"), now=T0 + 50 * MS) is None
    # the two legs of one "auto" order (close the long, open the rest) are not duplicates
    assert check(gate, order(offset="close"), now=T0 + 50 * MS) is None
    assert check(gate, order(), now=T0 + 100 * MS) is None


def test_max_position_per_side_and_net_counting_pending_opens() -> None:
    gate = make_gate(max_position=4, max_net_position=3)
    line = gate.ledger.line("a", IF)
    line.position.long_today = 2
    assert check(gate, order(volume=1)) is None
    assert check(gate, order(volume=1), pending=(1, 0)) == "MAX_POSITION"  # net 4 > 3
    line.position.short_today = 2
    assert check(gate, order(volume=2), pending=(0, 0)) is None  # long 4, net 2
    assert check(gate, order(volume=1), pending=(2, 0)) == "MAX_POSITION"  # long 5 > 4
    assert check(gate, order(offset="close", direction="sell", volume=2)) is None  # closes pass


def test_max_margin_per_agent_and_account() -> None:
    gate = make_gate(max_margin_ratio=0.5, max_position=100, max_net_position=100,
                     max_order_volume=100)  # fmt: skip
    # one lot: 5000 x 300 x 12% = 180,000; the agent may use 500,000
    assert check(gate, order(volume=2)) is None
    assert check(gate, order(volume=3)) == "MAX_MARGIN"
    gate.ledger.line("a", IF).position.long_today = 1
    gate.ledger.mark("IF2101", 5000.0)
    assert check(gate, order(volume=2)) == "MAX_MARGIN"
    account = make_gate(account_max_margin=400_000.0)
    account.ledger.line("b", IF).position.long_today = 1
    account.ledger.mark("IF2101", 5000.0)
    assert check(account, order(volume=1)) is None  # 360,000
    assert check(account, order(volume=2)) == "MAX_MARGIN"  # 540,000 over the account's limit


def test_daily_loss_breach_per_agent_and_account() -> None:
    gate = make_gate(max_daily_loss=10_000.0, account_max_daily_loss=15_000.0)
    line = gate.ledger.line("a", IF)
    gate.ledger.fill(line, "buy", "open", 5000.0, 1)
    gate.ledger.mark("IF2101", 4980.0)  # -6,000
    assert not gate.loss_breached("a") and not gate.account_loss_breached()
    gate.ledger.mark("IF2101", 4960.0)  # -12,000
    assert gate.loss_breached("a") and not gate.loss_breached("b")
    assert not gate.account_loss_breached()
    gate.ledger.fill(gate.ledger.line("b", IF), "buy", "open", 5000.0, 1)  # -24,000 together
    assert gate.account_loss_breached()


def test_self_trade_across_agents_of_the_account() -> None:
    gate = make_gate()
    resting = order("sell", 5000.4, agent="b")
    resting.state = State.ACCEPTED
    assert check(gate, order("buy", 5000.4), working=[resting]) == "SELF_TRADE"
    assert check(gate, order("buy", 5000.6), working=[resting]) == "SELF_TRADE"
    assert check(gate, order("buy", 5000.2), working=[resting]) is None
    assert check(gate, order("sell", 5000.0), working=[resting]) is None  # same side
    assert check(gate, order("buy", 0.0, kind="market"), working=[resting]) == "SELF_TRADE"
    resting.state = State.CANCELLED
    assert check(gate, order("buy", 5000.4), working=[resting]) is None
    assert check(make_gate(self_trade=False), order("buy", 5000.4), working=[]) is None


def test_cancel_budget_keeps_a_reserve_for_protective_cancels() -> None:
    gate = make_gate(cancel_limit=5, cancel_reserve=2)
    target = order()
    for _ in range(3):
        assert gate.check_cancel(target, protective=False) is None
        gate.cancel_sent(target, protective=False)
    refusal = gate.check_cancel(target, protective=False)
    assert refusal is not None and refusal[0] == "CANCEL_BUDGET"
    for _ in range(2):
        assert gate.check_cancel(target, protective=True) is None
        gate.cancel_sent(target, protective=True)
    refusal = gate.check_cancel(target, protective=True)
    assert refusal is not None and refusal[0] == "CANCEL_BUDGET"
    gate.new_day()
    assert gate.check_cancel(target, protective=False) is None


def test_fak_and_fok_do_not_use_the_cancel_budget() -> None:
    gate = make_gate(cancel_limit=2, cancel_reserve=1)
    for kind in ("fak", "fok"):
        gate.cancel_sent(order(kind=kind), protective=False)
    assert gate.cancels_used("IF2101") == 0
    gate.cancel_sent(order(), protective=False)
    assert gate.cancels_used("IF2101") == 1


def test_order_to_cancel_ratio() -> None:
    gate = make_gate(max_cancel_ratio=0.5, cancel_ratio_min_orders=4, duplicate_window_ms=0)
    target = order()
    for _ in range(4):
        gate.order_sent(order(), T0)
    for _ in range(2):
        assert gate.check_cancel(target, protective=False) is None
        gate.cancel_sent(target, protective=False)
    refusal = gate.check_cancel(target, protective=False)
    assert refusal is not None and refusal[0] == "ORDER_CANCEL_RATIO"
    assert gate.check_cancel(target, protective=True) is None  # protective ones always pass


def test_cancels_are_gated_by_a_halt_except_protective_ones() -> None:
    gate = make_gate()
    gate.set_state("agent", "a", HALTED)
    refusal = gate.check_cancel(order(), protective=False)
    assert refusal is not None and refusal[0] == "HALTED"
    assert gate.check_cancel(order(), protective=True) is None


def test_agent_overrides_apply_to_that_agent_only() -> None:
    config = RiskConfig(max_order_volume=5)
    gate = RiskGate(config, Ledger())
    for agent, overrides in (("a", {"max_order_volume": 1}), ("b", {})):
        gate.ledger.open_account(agent, 1_000_000.0)
        gate.add_agent(agent, RiskLimits.from_config(config, overrides))  # type: ignore[arg-type]
    assert check(gate, order(volume=2)) == "MAX_ORDER_VOLUME"
    assert check(gate, order(volume=2, agent="b")) is None


@pytest.mark.parametrize("bad", [{"cancel_limit": 10, "cancel_reserve": 10}])
def test_config_refuses_a_reserve_as_large_as_the_limit(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="cancel_reserve"):
        RiskConfig(**bad)  # type: ignore[arg-type]
