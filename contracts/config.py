"""The deployment configuration: one TOML file, a section per service, validated at start-up.

Every model is frozen, strict (no silent coercion of ``"8765"`` into ``8765``) and forbids unknown
keys, so a typo stops the service with a message naming the file, the key, what was expected and
what was found. Relative paths are resolved against the directory of the config file, so a
deployment behaves the same whatever the working directory (systemd starts services in ``/``).

Secrets never live here: see :mod:`contracts.credentials`.

Size: over 500 lines, since every key a deployment file may hold is defined here, in the order of
docs/configuration.md, which mirrors it: one place to read what a file may say.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.types import Strict

from contracts.errors import UserError

__all__ = [
    "AgentConfig",
    "AgentRiskConfig",
    "AlertsConfig",
    "CtpMdConfig",
    "CtpTradeConfig",
    "DeploymentConfig",
    "EngineConfig",
    "FactorConfig",
    "MdRecorderConfig",
    "MonitorConfig",
    "PaperConfig",
    "PortfolioConfig",
    "ProductRates",
    "ReplayConfig",
    "RiskConfig",
    "SimConfig",
    "SuiteConfig",
    "format_validation_error",
    "load_config",
    "parse_config",
]


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    path = path.expanduser()
    if base is not None and not path.is_absolute():
        path = (Path(base) / path).resolve()
    return path


# A path written as a TOML string; relative paths are taken from the config file's directory.
ConfigPath = Annotated[Path, Strict(False), AfterValidator(_resolve)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=64)]
Instrument = Annotated[str, Field(pattern=r"^[A-Za-z]{1,3}[0-9]{3,4}$")]


def _port_in_range(address: str) -> str:
    """The port of ``scheme://host:PORT`` is at most 65535 (a larger one would bind another)."""
    if address and not address.startswith("ipc://") and int(address.rpartition(":")[2]) > 65535:
        raise ValueError(f"{address}: a port is at most 65535 (0 picks a free one)")
    return address


def _existing_directory(path: Path) -> Path:
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; create it or remove it")
    return path


CtpFront = Annotated[
    str, Field(pattern=r"^(tcp|ssl)://[^\s:]+:[0-9]{1,5}$"), AfterValidator(_port_in_range)
]
ZmqEndpoint = Annotated[
    str, Field(pattern=r"^(tcp://[^\s:]+:[0-9]{1,5}|ipc://\S+)$"), AfterValidator(_port_in_range)
]
"""``tcp://HOST:PORT`` (port 0: any free port, as the service then reports) or ``ipc://PATH``."""
Port = Annotated[int, Field(ge=0, le=65535)]
MetricsAddress = Annotated[
    str, Field(pattern=r"^(|[^\s/]+:[0-9]{1,5})$"), AfterValidator(_port_in_range)
]
"""``HOST:PORT`` where Prometheus metrics are served (port 0: any free port), or "" for none."""


def _pace(value: object) -> float | str:
    if value == "max":
        return "max"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and value > 0:  # type: ignore[arg-type, operator]
        return float(value)  # type: ignore[arg-type]
    raise ValueError(f'expected a positive speed-up factor or "max", found {value!r}')


Pace = Annotated[float | Literal["max"], PlainValidator(_pace)]
"""1.0: real time; N: N times faster; "max": no waiting."""
LOOPBACK = ("127.", "localhost:", "[::1]:")


class _Section(BaseModel):
    # allow_inf_nan: no NaN or infinite number anywhere (a `capital = inf` or a `pace = nan`
    # passes every range check, since a comparison with NaN is false)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class SuiteConfig(_Section):
    """What the deployment is and where its data lives."""

    name: Name
    mode: Literal["live", "paper", "replay"]
    journal_dir: ConfigPath
    """Recordings (one tick journal per trading day) and the engine's event journal."""
    shm_dir: ConfigPath = Path("/dev/shm/hft")
    """The live channel: tick ring and snapshot table, in memory."""
    credentials_file: ConfigPath | None = None
    """A TOML file with secrets (mode 0600, outside the repository); the environment wins."""


class CtpMdConfig(_Section):
    fronts: Annotated[list[CtpFront], Field(min_length=1)]
    broker_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    flow_dir: ConfigPath
    connect_timeout_s: float = Field(10.0, gt=0)


class SimConfig(_Section):
    seed: int = 1
    interval_ms: int = Field(500, gt=0)
    start_day: Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")] | None = None
    """First trading day simulated (its night session first); default: today, or the next
    weekday at a weekend."""
    pace: Pace = 1.0
    """1.0: one snapshot per interval in real time; N: N times faster; "max": no waiting."""


class ReplayConfig(_Section):
    recording: ConfigPath
    """A recorded tick journal directory, or a directory of them (one per trading day)."""
    pace: Pace = 1.0
    shift_to_now: bool = False
    loop: bool = False


Z85Key = Annotated[str, Field(pattern=r"^[0-9a-zA-Z.:+=^!/*?&<>()\[\]{}@%$#-]{40}$")]
"""A CURVE public key in Z85 (40 characters), as ``hft relay keys`` prints it."""
TcpEndpoint = Annotated[
    str, Field(pattern=r"^tcp://[^\s:]+:[0-9]{1,5}$"), AfterValidator(_port_in_range)
]


class RelaySourceConfig(_Section):
    """``[md_recorder.relay]``: the mirror of another host's tick journal (docs/relay.md)."""

    connect: TcpEndpoint
    """The relay server's address, ``tcp://HOST:PORT`` (its ``relay.bind``)."""
    server_key: Z85Key
    """The relay server's CURVE public key (this host's secret is ``relay_secret_key``)."""


class RelayConfig(_Section):
    """``[relay]``: ``hft relay serve`` on the md_recorder's host (docs/relay.md)."""

    bind: TcpEndpoint = "tcp://127.0.0.1:5590"
    """Where mirrors connect (``tcp://*:PORT`` or an interface's address to reach other hosts;
    port 0: any free port, written to ``journal_dir/relay/endpoint``)."""
    clients: Annotated[list[Z85Key], Field(min_length=1)]
    """The CURVE public keys of the mirrors allowed to connect (``hft relay keys`` on each)."""


class MdRecorderConfig(_Section):
    source: Literal["ctp", "sim", "replay", "relay"]
    instruments: list[Instrument] = Field(default_factory=list)
    instruments_file: ConfigPath | None = None
    segment_mb: int = Field(64, ge=1, le=4096)
    ring_segments: int = Field(4, ge=2, le=4096)
    """Segments the live ring keeps in ``suite.shm_dir`` (memory: ring_segments x segment_mb);
    every segment is archived into the day's recording on disk as it completes."""
    calendar_file: ConfigPath | None = None
    """Sessions and products; default: the shipped configs/calendar.toml."""
    metrics: MetricsAddress = ""
    """Prometheus metrics at ``http://HOST:PORT/metrics`` ("": none; docs/OPERATIONS.md)."""
    ctp: CtpMdConfig | None = None
    sim: SimConfig | None = None
    replay: ReplayConfig | None = None
    relay: RelaySourceConfig | None = None

    @model_validator(mode="after")
    def _source_section(self) -> MdRecorderConfig:
        if getattr(self, self.source) is None:
            section = f"[md_recorder.{self.source}]"
            raise ValueError(f"source = {self.source!r} needs a {section} section")
        if (self.source in ("ctp", "sim") and not self.instruments
                and self.instruments_file is None):  # fmt: skip
            raise ValueError("give instruments = [...] or instruments_file = PATH")
        return self


class AgentRiskConfig(_Section):
    """Per-agent overrides of the agent-scoped limits of ``[engine.risk]``."""

    max_order_volume: int | None = Field(None, ge=1)
    max_orders_per_second: int | None = Field(None, ge=1)
    max_position: int | None = Field(None, ge=0)
    max_net_position: int | None = Field(None, ge=0)
    max_margin_ratio: float | None = Field(None, gt=0, le=1)
    max_daily_loss: float | None = Field(None, gt=0)


PLUGIN_REF: Final = r"^([A-Za-z_][\w.]*:[A-Za-z_]\w*|[A-Za-z0-9][\w.-]*)$"
"""``module:Class``, or the name of an installed package's entry point (docs/toolkit.md)."""


class AgentConfig(_Section):
    name: Name
    strategy: str = Field(pattern=PLUGIN_REF)
    """``module:Class`` of a strategy importable by the engine, or the name of an entry point in
    the ``hft.strategies`` group of an installed package."""
    instruments: Annotated[list[Instrument], Field(min_length=1)]
    capital: float = Field(gt=0)
    params: dict[str, Any] = Field(default_factory=dict)
    risk: AgentRiskConfig = Field(default_factory=AgentRiskConfig)
    """This agent's own limits where they differ from ``[engine.risk]``."""
    factors: list[Name] = Field(default_factory=list)
    """The ``[[engine.factors]]`` this agent reads (``Strategy.factor``)."""


class PortfolioConfig(_Section):
    """Agents under one capital allocation with limits on their sum, checked by the risk gate
    above each agent's own (docs/toolkit.md, "Portfolios"). A limit left out is not checked."""

    name: Name
    agents: Annotated[list[Name], Field(min_length=1)]
    capital: float = Field(gt=0)
    """The allocation: its agents' capital must add up to no more."""
    max_position: int | None = Field(None, ge=0)
    """Lots per side (long, short) per instrument, its agents' together, pending opens too."""
    max_net_position: int | None = Field(None, ge=0)
    """|long - short| per instrument, its agents' together, pending opens too."""
    max_margin_ratio: float | None = Field(None, gt=0, le=1)
    """Its agents' margin together, new orders included, as a share of ``capital``."""
    max_daily_loss: float | None = Field(None, gt=0)
    """Its agents' day PnL together; below minus this, its agents may only reduce."""


class FactorConfig(_Section):
    """A factor computed once per tick of its instruments and shared by the agents that name it
    (docs/toolkit.md, "Plugins")."""

    name: Name
    factor: str = Field(pattern=PLUGIN_REF)
    """``module:Class`` of a ``Factor``, or an entry point in the ``hft.factors`` group."""
    instruments: Annotated[list[Instrument], Field(min_length=1)]
    params: dict[str, Any] = Field(default_factory=dict)


class RiskConfig(_Section):
    """The pre-trade risk gate's limits (docs/engine.md, "Risk gate"). Agent-scoped limits apply
    to each agent unless its ``risk`` table overrides them."""

    max_order_volume: int = Field(10, ge=1)
    """Lots per order (agent)."""
    max_orders_per_second: int = Field(20, ge=1)
    """Orders in any one-second window (agent)."""
    account_orders_per_second: int = Field(50, ge=1)
    """Orders in any one-second window (account)."""
    max_position: int = Field(20, ge=0)
    """Lots per side (long, short) per instrument, counting pending opens (agent)."""
    max_net_position: int = Field(20, ge=0)
    """|long - short| per instrument, counting pending opens (agent)."""
    max_margin_ratio: float = Field(0.8, gt=0, le=1)
    """Margin in use after an opening order, as a share of the agent's capital (agent)."""
    account_max_margin: float | None = Field(None, gt=0)
    """Margin in use after an opening order, all agents together; none: no account limit."""
    max_daily_loss: float = Field(50_000.0, gt=0)
    """Realised plus mark-to-market minus fees below -max_daily_loss: the agent may only reduce."""
    account_max_daily_loss: float | None = Field(None, gt=0)
    """The same for all agents together: the account may only reduce."""
    cancel_limit: int = Field(400, ge=1)
    """Cancels per instrument per trading day for the account (the exchange's threshold)."""
    cancel_reserve: int = Field(20, ge=0)
    """Of cancel_limit, kept for protective cancels (halt, flatten, a stopped agent)."""
    max_cancel_ratio: float = Field(0.95, gt=0)
    """Cancels / orders per agent per day, once it has sent cancel_ratio_min_orders orders."""
    cancel_ratio_min_orders: int = Field(50, ge=0)
    price_band: float = Field(0.03, gt=0)
    """A limit price more than this share away from the last price is refused."""
    duplicate_window_ms: int = Field(100, ge=0)
    """The same agent, instrument, side, price and volume again within this window is refused."""
    self_trade: bool = True
    """Refuse an order that would cross a resting order of the same account."""
    trading_hours: bool = True
    """Refuse orders outside the product's sessions and auctions (configs/calendar.toml)."""

    @model_validator(mode="after")
    def _reserve_below_limit(self) -> RiskConfig:
        if self.cancel_reserve >= self.cancel_limit:
            raise ValueError("cancel_reserve must be smaller than cancel_limit")
        return self


class ProductRates(_Section):
    """A product's fees and margin as the broker charges them (``[engine.products.CODE]``, or
    ``[engine.products.default]`` for every product without its own table)."""

    margin_rate: float = Field(ge=0, le=1)
    open_per_lot: float = Field(0.0, ge=0)
    open_rate: float = Field(0.0, ge=0)
    """Of the turnover: price x volume x multiplier."""
    close_per_lot: float = Field(0.0, ge=0)
    close_rate: float = Field(0.0, ge=0)
    close_today_per_lot: float = Field(0.0, ge=0)
    close_today_rate: float = Field(0.0, ge=0)
    close_today_first: bool = False
    """Close today's lots before yesterday's (SHFE/INE, where the two are separate orders)."""
    long_margin_rate: float | None = Field(None, ge=0, le=1)
    """The long side's margin rate where it differs from ``margin_rate``."""
    short_margin_rate: float | None = Field(None, ge=0, le=1)
    long_margin_per_lot: float = Field(0.0, ge=0)
    """Margin by volume: an amount per lot (added to the rate's)."""
    short_margin_per_lot: float = Field(0.0, ge=0)
    margin_price: Literal["last", "pre_settlement", "open"] = "last"
    """The price margin is on: the last price, the previous settlement, or each lot's open
    price (yesterday's lots at the settlement they were carried at)."""


class PaperConfig(_Section):
    """The paper simulator (``[engine.paper]``, docs/paper.md)."""

    queue: Literal["conservative", "probabilistic"] = "conservative"
    """How much of the volume cancelled at a resting order's price was ahead of it."""
    cancel_share: float = Field(0.0, ge=0, le=1)
    """The conservative model's share of cancellations ahead of the order."""
    entry_latency_us: float = Field(1000.0, ge=0)
    """From the engine's submit to the exchange."""
    cancel_latency_us: float = Field(1000.0, ge=0)
    ack_latency_us: float = Field(500.0, ge=0)
    """From the exchange's event (acceptance, fill, cancel, refusal) to the engine."""
    latency: Literal["constant", "exponential"] = "constant"
    """``exponential``: each latency drawn with the configured value as its mean."""
    seed: int = 1

    @classmethod
    def instant(cls, **settings: Any) -> PaperConfig:
        """No latency at all: everything happens within the call that caused it (tests, and
        benchmarks of the engine rather than of the market)."""
        return cls(entry_latency_us=0, cancel_latency_us=0, ack_latency_us=0, **settings)


class CtpTradeConfig(_Section):
    fronts: Annotated[list[CtpFront], Field(min_length=1)]
    """Tried in turn; a round of them waits 1, 2, 4 ... 60 s before the next."""
    broker_id: str = Field(min_length=1)
    user_id: str = Field(min_length=1)
    app_id: str = Field(min_length=1)
    """The AppID the broker registered for this client (authentication needs the AuthCode in the
    credentials: ``ctp_auth_code``; without one the session logs in without authenticating)."""
    flow_dir: ConfigPath
    """CTP's flow files: keep it across restarts (the private stream resumes from them)."""
    connect_timeout_s: float = Field(10.0, gt=0)
    """A front that has not logged the session in by then is left for the next."""
    query_gap_s: float = Field(1.0, ge=0)
    """Between two queries (CTP allows about one a second)."""
    orders_per_s: float = Field(20.0, gt=0)
    """Order inserts and cancels sent per second at most (the broker's flow limit); more wait."""
    cancel_while_disconnected: Literal["queue", "refuse"] = "refuse"
    """A cancel while no session trades: sent after the next login's reconciliation, or
    refused at once."""


class EngineConfig(_Section):
    adapter: Literal["ctp", "paper"]
    command_endpoint: ZmqEndpoint = "tcp://127.0.0.1:5560"
    agents: list[AgentConfig] = Field(default_factory=list)
    factors: list[FactorConfig] = Field(default_factory=list)
    """Computed in the order listed, before the agents see the tick."""
    portfolios: list[PortfolioConfig] = Field(default_factory=list)
    """Groups of agents with limits on their sum (each agent in one at most)."""
    risk: RiskConfig = Field(default_factory=RiskConfig)
    products: dict[str, ProductRates] = Field(default_factory=dict)
    """Fees and margin per product code; "default" for the rest."""
    timer_ms: int = Field(1000, ge=10)
    """Period of the agents' ``on_timer``, in engine time (on a grid from the epoch)."""
    command_remote: bool = False
    """Allow a ``command_endpoint`` on an address other than the loopback (``tcp://*:PORT``,
    ``tcp://10.0.0.5:PORT``): the token and the commands travel in clear, so only on a network
    you trust."""
    strategy_paths: list[Annotated[ConfigPath, AfterValidator(_existing_directory)]] = Field(
        default_factory=list
    )
    """Directories searched first for the agents' strategy modules (your own strategies)."""
    start_at: Literal["beginning", "live"] = "beginning"
    """Where a fresh engine starts in the day's tick journal (a restart continues its journal)."""
    paper: PaperConfig = Field(default_factory=PaperConfig)
    """The paper simulator, when ``adapter = "paper"``."""
    warm_us: int = Field(50, ge=0)
    """While no input arrives, run the order path dry every this many microseconds, so that it
    stays in the CPU caches (0: never)."""
    callback_budget_ms: float = Field(10.0, gt=0)
    """An agent callback that runs longer is logged with the agent's name (every agent and
    command waits while one runs); one that blocks is stopped at SIGTERM (docs/engine.md)."""
    segment_mb: int = Field(16, ge=1, le=4096)
    """Size of one segment of the engine's journal (a day rolls over to a new one when full)."""
    on_feed_loss: Literal["halt", "cancel", "log"] = "halt"
    """When the tick feed dies (md_recorder gone, silent for ``feed_timeout_s``, or its recording
    closed with no newer day): "halt" cancels the working orders and halts the account until an
    operator resumes it, "cancel" only cancels them, "log" only logs it (docs/engine.md)."""
    on_stop: Literal["cancel", "keep"] = "cancel"
    """At a stop (SIGTERM, Ctrl-C): "cancel" cancels every working order (journaled, as an
    operator's cancel_all) and waits up to ``stop_wait_s`` for the answers; "keep" leaves them
    at the exchange for the next start to manage."""
    stop_wait_s: float = Field(5.0, ge=0, le=60)
    feed_timeout_s: float = Field(5.0, gt=0)
    """A recorder that is alive but has not written to its journal's head (ticks or heartbeats)
    for this long counts as gone."""
    metrics: MetricsAddress = ""
    """Prometheus metrics at ``http://HOST:PORT/metrics`` ("": none; docs/OPERATIONS.md)."""
    ctp: CtpTradeConfig | None = None

    @model_validator(mode="after")
    def _adapter_section(self) -> EngineConfig:
        if self.adapter == "ctp" and self.ctp is None:
            raise ValueError("adapter = 'ctp' needs an [engine.ctp] section")
        names = [a.name for a in self.agents]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(dupes)}")
        factors = [f.name for f in self.factors]
        if len(set(factors)) != len(factors):
            raise ValueError(f"factor names must be unique: {', '.join(factors)}")
        for agent in self.agents:
            unknown = [f for f in agent.factors if f not in factors]
            if unknown:
                raise ValueError(f"agent {agent.name} reads factor {unknown[0]!r}, which is not "
                                 "under [[engine.factors]]; defined: "
                                 f"{', '.join(factors) or 'none'}")  # fmt: skip
        self._portfolios_fit()
        endpoint = self.command_endpoint
        host = endpoint.removeprefix("tcp://")
        remote = endpoint.startswith("tcp://") and not host.startswith(LOOPBACK)
        if remote and not self.command_remote:
            raise ValueError(
                f"command_endpoint {endpoint} is reachable from other machines and the token "
                "travels in clear; bind tcp://127.0.0.1:PORT or ipc://PATH, or set "
                "command_remote = true on a trusted network"
            )
        return self

    def _portfolios_fit(self) -> None:
        capital = {a.name: a.capital for a in self.agents}
        owner: dict[str, str] = {}
        names = [p.name for p in self.portfolios]
        if len(set(names)) != len(names):
            raise ValueError(f"portfolio names must be unique: {', '.join(names)}")
        for p in self.portfolios:
            for agent in p.agents:
                if agent not in capital:
                    raise ValueError(f"portfolio {p.name} names agent {agent!r}, which is not "
                                     f"under [[engine.agents]]; agents: "
                                     f"{', '.join(capital) or 'none'}")  # fmt: skip
                if agent in owner:
                    raise ValueError(f"agent {agent} is in two portfolios ({owner[agent]} and "
                                     f"{p.name}); an agent belongs to one at most")  # fmt: skip
                owner[agent] = p.name
            total = sum(capital[a] for a in p.agents)
            if total > p.capital:
                raise ValueError(f"portfolio {p.name}: its agents' capital adds up to "
                                 f"{total:,.0f}, more than its capital "
                                 f"{p.capital:,.0f}")  # fmt: skip


class MonitorAccount(_Section):
    """An engine the monitor watches: its name (what tokens are granted) and its journal."""

    name: Name
    journal_dir: ConfigPath
    """The engine's ``suite.journal_dir``: its day journals are ``journal_dir/engine/YYYYMMDD``."""


class AlertsConfig(_Section):
    refusal_burst: int = Field(20, ge=1)
    """This many refusals (risk gate, exchange, cancel) of an account within ``refusal_window_s``
    raise an alert."""
    refusal_window_s: float = Field(10.0, gt=0)
    behind_s: float = Field(5.0, gt=0)
    """An engine this many seconds behind its feed raises an alert."""
    command: list[str] = Field(default_factory=list)
    """A program run for each alert raised or cleared (argv, no shell), the alert's JSON on its
    standard input; empty: none."""
    webhook: bool = False
    """Post each alert as JSON to ``alert_webhook_url`` (credentials file or
    ``HFT_ALERT_WEBHOOK_URL``)."""
    timeout_s: float = Field(10.0, gt=0, le=300)
    """How long a command or a post may take before it is abandoned (and logged)."""

    @field_validator("command")
    @classmethod
    def _program(cls, v: list[str]) -> list[str]:
        if v and not v[0]:
            raise ValueError("the command's first element is the program to run")
        return v


class MonitorConfig(_Section):
    host: str = "127.0.0.1"
    port: Port = 8765
    """WebSocket endpoint and web dashboard (0: any free port, written to the endpoint file)."""
    zmq: bool = True
    """Serve programs over ZMQ too (``zmq_pub``, ``zmq_snapshot``)."""
    zmq_pub: ZmqEndpoint = "tcp://127.0.0.1:5570"
    """The first account's PUB socket; the k-th account's is PORT + k (port 0: any free port;
    ``ipc://PATH``: PATH.NAME). Loopback and ipc: PLAIN with the token; another address: CURVE,
    with ``monitor_curve_secret_key`` in the credentials."""
    zmq_snapshot: ZmqEndpoint = "tcp://127.0.0.1:5569"
    """The REP socket that answers snapshot and endpoint requests."""
    accounts: list[MonitorAccount] = Field(default_factory=list)
    """The engines to watch; none: this deployment's, named ``suite.name``."""
    origins: list[str] = Field(default_factory=list)
    """Browser origins allowed besides the server's own (``http://host:port``)."""
    client_queue: int = Field(1000, ge=10, le=1_000_000)
    """Changes a client may have waiting (a batch of deltas counts as many as it holds) before
    its queue is coalesced into a snapshot."""
    slow_grace_s: float = Field(10.0, gt=0)
    """A client coalesced twice within this many seconds is closed as too slow."""
    replay_deltas: int = Field(100_000, ge=0, le=10_000_000)
    """Deltas kept per account for clients that resume."""
    marks_hz: float = Field(4.0, gt=0, le=100)
    ticks_hz: float = Field(2.0, gt=0, le=20)
    """The latest ticks of the instruments a client asked for, sent at most this often."""
    batch_ms: float = Field(10.0, ge=0, le=1000)
    """Deltas are sent to WebSocket clients in batches at most this often (0: as they come)."""
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)


class DeploymentConfig(_Section):
    suite: SuiteConfig
    md_recorder: MdRecorderConfig
    engine: EngineConfig
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    relay: RelayConfig | None = None
    """``hft relay serve``: this host's tick journals to mirrors on other hosts."""

    @model_validator(mode="after")
    def _mode_fits(self) -> DeploymentConfig:
        mode, source, adapter = self.suite.mode, self.md_recorder.source, self.engine.adapter
        # "relay": another host's md_recorder, of any mode, mirrored here
        if mode == "live" and (source not in ("ctp", "relay") or adapter != "ctp"):
            raise ValueError(
                "mode 'live' needs md_recorder.source = 'ctp' (or 'relay') and engine.adapter = "
                "'ctp'"
            )
        if mode in ("paper", "replay") and adapter != "paper":
            raise ValueError(f"mode {mode!r} needs engine.adapter = 'paper'")
        if mode == "replay" and source not in ("replay", "relay"):
            raise ValueError("mode 'replay' needs md_recorder.source = 'replay' (or 'relay')")
        if mode == "paper" and source == "replay":
            raise ValueError("mode 'paper' takes live or simulated data; use mode = 'replay'")
        return self

    @property
    def uses_ctp(self) -> bool:
        """True if any service will load openctp-ctp (and so needs the zh_CN.GB18030 locale)."""
        return self.md_recorder.source == "ctp" or self.engine.adapter == "ctp"


def parse_config(data: dict[str, Any], source: str, base_dir: Path) -> DeploymentConfig:
    """Validate an already-parsed TOML document; ``source`` names it in error messages."""
    try:
        return DeploymentConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, source)) from None


def load_config(path: str | Path) -> DeploymentConfig:
    """Read and validate a deployment file, or raise :class:`UserError` with one clear message."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(
            f"{path}: no such config file; pass --config with a deployment file such as "
            "configs/paper.toml"
        ) from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; pass --config with a .toml file") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied; make the config file readable") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text; save the config file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(data, str(path), path.resolve().parent)


# --- error messages ---------------------------------------------------------------------------

_PYDANTIC_PREFIXES = ("Input should be ", "Value error, ")


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _model_at(
    loc: tuple[int | str, ...], root: type[BaseModel] | None = None
) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc`` (for suggesting known keys)."""
    model: type[BaseModel] | None = root or DeploymentConfig
    skip_key = False
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if skip_key:  # the key of a table of sections, such as a session's name
            skip_key = False
            continue
        field = model.model_fields.get(part)
        model = _section_type(field.annotation) if field is not None else None
        skip_key = field is not None and getattr(field.annotation, "__origin__", None) is dict
    return model


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _describe_one(err: Any, root: type[BaseModel] | None = None) -> str:
    loc = tuple(err["loc"])
    key = _key_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc, root)
        known = sorted(model.model_fields) if model else []
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
        suggestion = f"did you mean {hint[0]!r}? " if hint else ""
        return f"{key}: unknown key; {suggestion}expected one of: {', '.join(known)}"
    if kind == "missing":
        return f"{key}: required value missing"
    msg = err["msg"]
    for prefix in _PYDANTIC_PREFIXES:
        msg = msg.removeprefix(prefix)
    if kind == "string_pattern_mismatch":
        msg = f"a string matching {err['ctx']['pattern']}"
    found = err.get("input")
    if isinstance(found, dict) or kind == "value_error":
        return f"{key}: {msg}"
    return f"{key}: expected {msg}, found {found!r} ({type(found).__name__})"


def format_validation_error(
    exc: ValidationError, source: str, root: type[BaseModel] | None = None
) -> str:
    """One line per problem, each naming the file and the key path; no traceback. ``root``:
    the model of the whole file (default: the deployment config)."""
    lines = [f"{source}: {_describe_one(err, root)}" for err in exc.errors()]
    return "\n".join(dict.fromkeys(lines))
