"""``hft systemd install``: the suite's systemd units (``systemd/*.in``) filled with this
machine's paths and written where systemd reads them (docs/OPERATIONS.md, "Installing as
services")."""

from __future__ import annotations

import argparse
import grp
import pwd
import re
import shutil
import sys
from pathlib import Path
from typing import Final

from contracts.config import DeploymentConfig, load_config
from contracts.errors import UserError

__all__ = ["RELAY_UNIT", "UNITS", "add_arguments", "render", "run", "state_dirs"]

ROOT: Final = Path(__file__).resolve().parents[2]
TEMPLATES: Final = ROOT / "systemd"
UNITS: Final = ("hft-md-recorder.service", "hft-engine.service", "hft-monitor.service",
                "hft.target")  # fmt: skip
RELAY_UNIT: Final = "hft-relay.service"  # also, when the deployment has a [relay] section


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("install",), help="write the units")
    parser.add_argument("--config", required=True, type=Path, help="the deployment file")
    parser.add_argument("--prefix", type=Path, default=Path("/etc/systemd/system"),
                        help="where to write the units (default: /etc/systemd/system)")  # fmt: skip
    parser.add_argument("--user", default="hft", help="the account the services run as")
    parser.add_argument("--group", help="their group (default: the user's own)")
    parser.add_argument("--environment-file", type=Path, default=Path("/etc/hft/hft.env"),
                        help="secrets as VAR=value lines, mode 0600")  # fmt: skip
    parser.add_argument("--hft", type=Path, help="the hft program (default: this one)")
    parser.add_argument(
        "--account", metavar="NAME",
        help="a further trading account: write only its engine's unit, hft-engine-NAME.service "
             "(one engine per account, each with its own deployment file; docs/OPERATIONS.md)",
    )  # fmt: skip


def render(
    config_path: Path, config: DeploymentConfig, *, user: str, group: str,
    environment_file: Path, hft: Path, account: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """Each unit's text, by file name; with ``account``, the engine's alone, named for it."""
    writable = set(state_dirs(config))
    shm = config.suite.shm_dir
    if shm.is_relative_to("/dev/shm"):  # a tmpfs, emptied at boot: the mount is there
        writable = (writable - {shm}) | {Path("/dev/shm")}
    values = {
        "@HFT@": str(hft), "@CONFIG@": str(config_path), "@USER@": user, "@GROUP@": group,
        "@ENVIRONMENT_FILE@": str(environment_file), "@STATE_DIR@": str(config_path.parent),
        "@WRITABLE@": " ".join(sorted(str(p) for p in writable)), "@DOCS@": str(ROOT / "docs"),
        "@RELAY@": f" {RELAY_UNIT}" if config.relay is not None else "",
    }  # fmt: skip
    hardening = _read("hardening.conf.in")
    out = {}
    units = (*UNITS, *([RELAY_UNIT] if config.relay is not None else []))
    for unit in ("hft-engine.service",) if account else units:
        text = _read(f"{unit}.in").replace("@HARDENING@", hardening)
        for key, value in values.items():
            text = text.replace(key, value)
        if account:
            text = text.replace("Description=hft engine:", f"Description=hft engine ({account}):")
        out[f"hft-engine-{account}.service" if account else unit] = text
    return out


def state_dirs(config: DeploymentConfig) -> list[Path]:
    """The directories the services write: journals (this deployment's and the monitor's
    accounts') and the shared-memory directory."""
    dirs = {config.suite.journal_dir, config.suite.shm_dir}
    return sorted(dirs | {a.journal_dir for a in config.monitor.accounts})


def _read(name: str) -> str:
    try:
        return (TEMPLATES / name).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{TEMPLATES / name}: cannot read the unit template ({exc.strerror}); "
                        "run hft from the suite's checkout") from None  # fmt: skip


def run(args: argparse.Namespace) -> int:
    config_path = args.config.resolve()
    config = load_config(config_path)
    try:
        account = pwd.getpwnam(args.user)
    except KeyError:
        raise UserError(
            f"hft systemd: no user {args.user!r} on this machine; create it first "
            f"(useradd --system --home-dir {config_path.parent} --shell /usr/sbin/nologin "
            f"{args.user}) or name another with --user"
        ) from None
    group = args.group or grp.getgrgid(account.pw_gid).gr_name
    beside = Path(sys.executable).parent / "hft"  # the venv's, when run as python -m
    hft = args.hft or (beside if beside.exists() else Path(shutil.which("hft") or "hft"))
    if not hft.is_absolute() or not hft.exists():
        raise UserError("hft systemd: cannot find the hft program; name it with --hft")
    hft = hft.absolute()  # the venv's own path, not what its python links to
    instance = args.account
    if instance is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", instance):
        raise UserError(f"hft systemd: --account {instance!r}: letters, digits, '_', '.' and "
                        "'-' only (it names a unit)")  # fmt: skip
    units = render(config_path, config, user=args.user, group=group,
                   environment_file=args.environment_file, hft=hft, account=instance)  # fmt: skip
    try:
        for directory in state_dirs(config):  # systemd mounts them writable: they must exist
            if not directory.is_relative_to("/dev/shm"):
                directory.mkdir(parents=True, exist_ok=True)
                shutil.chown(directory, account.pw_uid, account.pw_gid)
                print(f"state directory {directory} (owner {args.user})")
        args.prefix.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            (args.prefix / name).write_text(text, encoding="utf-8")
            print(f"wrote {args.prefix / name}")
    except OSError as exc:
        raise UserError(f"{exc.filename}: cannot write it ({exc.strerror}); run as root or "
                        "choose --prefix") from None  # fmt: skip
    print(f"the services run {hft} as {args.user}:{group} with {config_path}")
    print(f"secrets: {args.environment_file} (VAR=value lines, mode 0600), for example "
          "HFT_MONITOR_ADMIN_TOKEN=...")  # fmt: skip
    if instance:
        print(f"then: systemctl daemon-reload && systemctl enable --now hft-engine-{instance}"
              ".service (list the account's journal in [[monitor.accounts]])")  # fmt: skip
    else:
        print("then: systemctl daemon-reload && systemctl enable --now hft.target")
    return 0
