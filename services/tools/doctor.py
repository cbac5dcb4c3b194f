"""``hft doctor``: can this machine run the suite? One line per check, each failure with its fix."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from contracts.calendar import DEFAULT_CALENDAR, load_calendar
from contracts.clock import CHINA
from contracts.config import DeploymentConfig, load_config
from contracts.credentials import load_credentials
from contracts.ctp_locale import CTP_LOCALE, LOCALE_FIX, has_locale
from contracts.errors import UserError
from contracts.logs import get_logger
from libshm import accel

__all__ = ["Check", "check_calendar", "check_locale", "check_port", "check_space", "ctp_checks",
           "run_doctor"]  # fmt: skip

MIB = 1 << 20


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        text = f"{mark}  {self.name}: {self.detail}"
        return text + (f" -- fix: {self.fix}" if not self.ok and self.fix else "")


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, version, "install Python 3.11 or newer")


def check_locale(name: str = CTP_LOCALE, required: bool = True) -> Check:
    """Probe the locale in a child process: openctp-ctp aborts the whole process without it."""
    found = has_locale(name)
    why = "" if required else " (needed only when a service uses CTP)"
    detail = "installed" if found else f"missing: openctp-ctp aborts the process at import{why}"
    return Check(f"locale {name}", found, detail, LOCALE_FIX, required)


def check_ctp_library(required: bool) -> Check:
    probe = (
        "import openctp_ctp.thostmduserapi as m, sys; "
        "sys.stderr.write(m.CThostFtdcMdApi.GetApiVersion())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=60, check=False, text=True
    )
    if done.returncode == 0:
        return Check("openctp-ctp", True, f"loads, API {done.stderr.strip()}", required=required)
    return Check(
        "openctp-ctp",
        False,
        f"does not load (exit {done.returncode})",
        "pip install openctp-ctp==6.7.11.0 inside the project's environment (make install)",
        required,
    )


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def check_space(label: str, path: Path, need_mib: int, want_mib: int) -> Check:
    """Fail under ``need_mib`` free or without write access; warn under ``want_mib``."""
    where = _existing_ancestor(path)
    free = shutil.disk_usage(where).free // MIB
    if not os.access(where, os.W_OK):
        return Check(label, False, f"{where} is not writable", f"grant write access to {where}")
    if free < need_mib:
        return Check(
            label,
            False,
            f"{free} MiB free at {where}, needs {need_mib}",
            f"free space on the file system of {where} or point the config elsewhere",
        )
    if free < want_mib:
        return Check(
            label,
            False,
            f"{free} MiB free at {where}, {want_mib} advised",
            "free space before a whole trading day",
            required=False,
        )
    return Check(label, True, f"{free} MiB free at {where}")


def check_port(label: str, host: str, port: int) -> Check:
    if port == 0:
        return Check(label, True, f"{host}: any free port (0)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return Check(
                label,
                False,
                f"{host}:{port} cannot be bound ({exc.strerror})",
                f"stop what holds port {port} (ss -ltnp 'sport = :{port}') "
                "or choose another port in the config",
            )
    return Check(label, True, f"{host}:{port} free")


def check_endpoint(label: str, endpoint: str) -> Check:
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://") :].rpartition(":")
        return check_port(label, host.strip("[]"), int(port))
    path = Path(endpoint[len("ipc://") :])
    parent = _existing_ancestor(path.parent)
    if not os.access(parent, os.W_OK):
        return Check(label, False, f"{parent} is not writable", f"grant write access to {parent}")
    return Check(label, True, f"{endpoint} can be created")


def _config_checks(config: DeploymentConfig) -> list[Check]:
    suite = config.suite
    md = config.md_recorder
    # the day's ring with the next segment being prepared, and the previous day's ring, kept
    # for readers finishing it; the snapshot table is small
    ring_mib = (md.ring_segments + 1) * md.segment_mb
    checks = [
        check_space("journal space", suite.journal_dir, need_mib=256, want_mib=4096),
        check_space(
            "shared memory", suite.shm_dir, need_mib=ring_mib + 16, want_mib=2 * ring_mib + 16
        ),
        check_port("monitor port", config.monitor.host, config.monitor.port),
        check_endpoint("monitor zmq", config.monitor.zmq_pub),
        check_endpoint("engine commands", config.engine.command_endpoint),
        *(check_endpoint(f"{name} metrics", f"tcp://{address}")
          for name, address in (("md_recorder", md.metrics), ("engine", config.engine.metrics))
          if address),
        *([check_endpoint("relay", config.relay.bind)] if config.relay is not None else []),
    ]  # fmt: skip
    try:
        credentials = load_credentials(suite.credentials_file)
    except UserError as err:
        return [*checks, Check("credentials", False, str(err))]
    needed = []
    if config.uses_ctp:
        needed.append("ctp_password")
    if config.engine.adapter == "ctp":
        needed.append("ctp_auth_code")
    if config.relay is not None or config.md_recorder.source == "relay":
        needed.append("relay_secret_key")
    for field in needed:
        try:
            credentials.require(field)
            checks.append(Check(f"secret {field}", True, "set"))
        except UserError as err:
            optional = field == "ctp_auth_code"  # a front that does not authenticate needs none
            detail = ("not set: the session logs in without authenticating, which most brokers "
                      "refuse" if optional else "not set")  # fmt: skip
            checks.append(Check(f"secret {field}", False, detail, str(err).split("; ", 1)[1],
                                required=not optional))  # fmt: skip
    return checks


def ctp_checks(config: DeploymentConfig) -> list[Check]:
    """``--ctp``: each front of ``[engine.ctp]`` connected to and logged in at, and the account
    queried, one check per step with CTP's answer (never the password or the AuthCode)."""
    if config.engine.ctp is None:
        fix = "add [engine.ctp] with fronts, broker_id, user_id, app_id and flow_dir"
        return [Check("ctp account", False, "no [engine.ctp] section in the deployment file", fix)]
    if not has_locale():
        return [Check("ctp account", False, "cannot load openctp-ctp without the locale",
                      LOCALE_FIX)]  # fmt: skip
    from services.tools.ctp_check import probe_front, session_config  # noqa: PLC0415 (locale)

    credentials = load_credentials(config.suite.credentials_file)
    try:
        base = session_config(config, credentials)
    except UserError as err:
        return [Check("ctp account", False, "no password", str(err))]
    checks = []
    for front in base.fronts:
        for step, ok, text in probe_front(base, front):
            checks.append(Check(f"ctp {front} {step}", ok, text,
                                "" if ok else _CTP_FIXES.get(step, "")))  # fmt: skip
    return checks


_CTP_FIXES = {
    "connect": "check the front address and port, the network, and the broker's trading hours",
    "authenticate": "check app_id and the AuthCode (HFT_CTP_AUTH_CODE) with the broker",
    "login": "check broker_id, user_id and the password (HFT_CTP_PASSWORD)",
    "settlement": "confirm the settlement statement in another terminal, or ask the broker",
    "account": "ask the broker why the account query is refused",
    "answer": "the front stopped answering: try again, or ask the broker",
}


def check_calendar(path: Path, today: dt.date) -> Check:
    """The calendar and its holidays load, and the holidays cover this year (and the next,
    from December on): a year not covered would count its holidays as trading days."""
    try:
        calendar = load_calendar(path)
    except UserError as err:
        return Check("calendar", False, str(err).replace("\n", "; "), "edit the file as the "
                     "message says")  # fmt: skip
    years = [today.year] + ([today.year + 1] if today.month == 12 else [])
    missing = [y for y in years if y not in calendar.holiday_years]
    if missing:
        return Check(
            "calendar", False,
            f"{path}: the exchange holidays of {', '.join(map(str, missing))} are not listed, "
            "so those holidays would count as trading days",
            "add the year to configs/holidays.toml from the State Council's notice on that "
            "year's holidays (published each November or December)", required=False,
        )  # fmt: skip
    return Check("calendar", True, f"{path}, holidays listed to {max(calendar.holiday_years)}")


def check_fast_path() -> Check:
    """The C fast path of libshm: optional (same bytes without it), about 2x the speed."""
    return Check(
        "libshm fast path",
        accel.FAST is not None,
        accel.describe(),
        "install a C compiler (apt-get install -y gcc) and run make install again",
        required=False,
    )


def check_import_scanner() -> Check:
    """The import's C scanner: optional (pyarrow's reader takes every file without it, the
    same journals), about twice the speed of ``hft import`` (docs/BENCHMARKS.md)."""
    from services.md_recorder import scanned  # noqa: PLC0415 (the importer only when asked)

    return Check(
        "import scanner",
        scanned.SCANNER is not None,
        scanned.scanner_status(),
        "install a C compiler (apt-get install -y gcc) and run make install again",
        required=False,
    )


def check_native() -> Check:
    """The engine's core compiled with mypyc: optional (same journal without it), about 2x the
    speed on the order path (docs/engine.md, "Compiled core")."""
    from services.engine import native  # noqa: PLC0415 (the engine only when asked)

    return Check(
        "engine compiled core",
        native.compiled(),
        native.status(),
        "run make native (it needs a C compiler: apt-get install -y gcc)",
        required=False,
    )


def run_doctor(config_path: str | None, today: dt.date | None = None, ctp: bool = False) -> int:
    """Print every check; return 1 if a required one failed, else 0. ``today``: the date the
    holidays must cover (the clock's, in China, by default). ``ctp``: also log in to the CTP
    account at each front (needs the config)."""
    log = get_logger()
    checks = [check_python(), check_fast_path(), check_import_scanner(), check_native()]
    config: DeploymentConfig | None = None
    config_check: Check | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
            config_check = Check("config", True, f"{config_path} is valid")
            log.debug("config_loaded", path=config_path, config=config.model_dump(mode="json"))
        except UserError as err:
            config_check = Check(
                "config", False, str(err).replace("\n", "; "), "edit the file as the message says"
            )
    uses_ctp = config.uses_ctp if config is not None else False
    locale_check = check_locale(required=uses_ctp)
    checks.append(locale_check)
    if locale_check.ok:
        checks.append(check_ctp_library(required=uses_ctp))
    if config_check is not None:
        checks.append(config_check)
    calendar = config.md_recorder.calendar_file if config is not None else None
    today = today or dt.datetime.now(CHINA).date()
    checks.append(check_calendar(Path(calendar or DEFAULT_CALENDAR), today))
    if config is not None:
        checks.extend(_config_checks(config))
        if ctp:
            checks.extend(ctp_checks(config))
    else:
        checks.append(check_space("shared memory", Path("/dev/shm"), 256, 2048))
    for check in checks:
        print(check.line())
    if config_path is None:
        print("note  no --config given: journal, port and secret checks were skipped"
              + ("; --ctp needs one" if ctp else ""))  # fmt: skip
    failed = [c.name for c in checks if not c.ok and c.required]
    print(
        f"doctor: {len(checks) - len(failed)} of {len(checks)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0
