"""``hft up --config FILE``: the three services of one deployment in the foreground, for machines
without systemd (laptops, containers, CI), supervised by supervisor's ``supervisord`` run in the
foreground with a generated configuration (docs/OPERATIONS.md, "hft up").

Each service's lines come out on this terminal prefixed with its name (in its colour on a
terminal); one that exits with an error is started again after 1, 2, 3, ... s (supervisor's
backoff), up to ``START_RETRIES`` times; a replay's md_recorder that finished (exit 0) is not.
Ctrl-C or SIGTERM stops all three (each gets SIGTERM and up to ``STOP_WAIT_S`` to stop cleanly).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Final

from contracts.config import load_config
from contracts.credentials import load_credentials
from contracts.errors import UserError
from services.monitor.auth import Tokens

__all__ = ["PROGRAMS", "add_arguments", "run", "supervisor_config"]

PROGRAMS: Final = ("md-recorder", "engine", "monitor")  # started in this order
COMMANDS: Final = {"relay": "relay serve"}  # a program whose hft command is not its name
START_RETRIES: Final = 10
STOP_WAIT_S: Final = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the deployment file")


def supervisor_config(config: Path, state: Path, *, hft: Path, level: str, color: bool,
                      programs: tuple[str, ...] = PROGRAMS) -> str:  # fmt: skip
    """supervisord's configuration (its INI format) for the services of ``config``."""
    lines = [
        "[supervisord]", "nodaemon=true", "logfile=/dev/null", "logfile_maxbytes=0",
        "loglevel=warn", f"pidfile={state / 'supervisord.pid'}", f"childlogdir={state}",
        f"directory={config.parent}",
        *(["user=root"] if os.geteuid() == 0 else []),  # as root: say so, and stay root
        "",
    ]  # fmt: skip
    for i, name in enumerate(programs):
        env = ['HFT_LOG_FORMAT="console"', f'HFT_LOG_PREFIX="{name}"']
        if color:
            env.append('HFT_LOG_COLOR="1"')
        lines += [
            f"[program:{name}]",
            f"command={hft} {COMMANDS.get(name, name)} --config {config} --log-level {level}",
            f"directory={config.parent}", f"priority={10 * (i + 1)}", "autostart=true",
            "autorestart=unexpected", "exitcodes=0", "startsecs=2",
            f"startretries={START_RETRIES}", "stopsignal=TERM", f"stopwaitsecs={STOP_WAIT_S}",
            "stopasgroup=true", "killasgroup=true", "redirect_stderr=true",
            "stdout_logfile=/dev/fd/1", "stdout_logfile_maxbytes=0",
            f"environment={','.join(env)}", "",
        ]  # fmt: skip
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    config_path = args.config.resolve()
    config = load_config(config_path)
    if not len(Tokens(load_credentials(config.suite.credentials_file))):
        raise UserError(
            "hft up: the monitor has no token, so it would not start; export "
            "HFT_MONITOR_ADMIN_TOKEN (and HFT_MONITOR_TOKEN for viewers) or add [[monitor_tokens]] "
            "to the credentials file named by suite.credentials_file"
        )
    if config.relay is not None or config.md_recorder.source == "relay":
        load_credentials(config.suite.credentials_file).require("relay_secret_key")
    # with a [relay] section, this host also serves its tick journals to other hosts
    programs = (*PROGRAMS, "relay") if config.relay is not None else PROGRAMS
    state = config.suite.journal_dir / "up"
    bin_dir = Path(sys.executable).parent
    hft, supervisord = bin_dir / "hft", bin_dir / "supervisord"
    for program in (hft, supervisord):
        if not program.exists():
            raise UserError(f"hft up: {program} is missing; run `make install` (it installs "
                            "supervisor into the venv)")  # fmt: skip
    try:
        state.mkdir(parents=True, exist_ok=True)
        conf = state / "supervisord.conf"
        conf.write_text(supervisor_config(config_path, state, hft=hft, level=args.log_level,
                                          programs=programs,
                                          color=sys.stdout.isatty()), encoding="utf-8")  # fmt: skip
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write hft up's state ({exc.strerror}); check "
                        "suite.journal_dir") from None  # fmt: skip
    print(f"hft up: {', '.join(programs)} from {config_path} (mode {config.suite.mode}); "
          "Ctrl-C stops them", flush=True)  # fmt: skip
    os.execv(supervisord, [str(supervisord), "--nodaemon", "--configuration", str(conf)])
