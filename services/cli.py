"""The ``hft`` command: one subcommand per job, each importing its service only when run.

This is the composition root: the only module that knows every service. Services themselves never
import each other.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contracts.config import load_config
from contracts.errors import UserError
from contracts.logs import LEVELS, configure
from contracts.stop import install_early
from libshm import JournalError

__all__ = ["main"]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _config_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        "-c",
        required=required,
        metavar="FILE",
        help="deployment file (TOML), for example configs/paper.toml",
    )


def _run_doctor(args: argparse.Namespace) -> int:
    from services.tools.doctor import run_doctor

    if args.ctp and args.config is None:
        raise UserError("doctor --ctp needs --config: the deployment whose [engine.ctp] to check")
    return run_doctor(args.config, ctp=args.ctp)


def _add_journal(parser: argparse.ArgumentParser) -> None:
    from services.tools.journal import add_arguments

    add_arguments(parser)


def _run_journal(args: argparse.Namespace) -> int:
    from services.tools.journal import run

    return run(args)


def _run_md_recorder(args: argparse.Namespace) -> int:
    install_early()  # before the service's modules and config load: a SIGTERM now stops it
    from services.md_recorder.service import run_md_recorder

    return run_md_recorder(load_config(args.config))


def _run_engine(args: argparse.Namespace) -> int:
    install_early()
    from services.engine.live import run_engine

    return run_engine(load_config(args.config))


def _run_monitor(args: argparse.Namespace) -> int:
    install_early()
    from services.monitor.service import run_monitor

    return run_monitor(load_config(args.config))


def _add_command(parser: argparse.ArgumentParser) -> None:
    from services.tools.command import add_arguments

    _config_argument(parser)
    add_arguments(parser)


def _run_command(args: argparse.Namespace) -> int:
    from services.tools.command import run

    return run(load_config(args.config), args)


def _add_import(parser: argparse.ArgumentParser) -> None:
    from services.tools.import_ticks import add_arguments

    add_arguments(parser)


def _run_import(args: argparse.Namespace) -> int:
    from services.tools.import_ticks import run

    return run(args)


def _add_up(parser: argparse.ArgumentParser) -> None:
    from services.tools.up import add_arguments

    add_arguments(parser)


def _run_up(args: argparse.Namespace) -> int:
    from services.tools.up import run

    return run(args)


def _add_relay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("serve", "mirror", "keys"),
                        help="serve: this host's tick journals to mirrors; mirror: keep a copy "
                        "of another host's here; keys: print a new CURVE key pair")  # fmt: skip
    _config_argument(parser, required=False)


def _run_relay(args: argparse.Namespace) -> int:
    if args.action == "keys":
        import zmq

        public, secret = zmq.curve_keypair()
        print(f'public_key = "{public.decode()}"   # for the other side\'s config')
        print(f'relay_secret_key = "{secret.decode()}"   # this host\'s credentials file only')
        return 0
    if not args.config:
        raise UserError(f"hft relay {args.action} needs --config FILE")
    install_early()
    from services.md_recorder.relay_service import run_mirror, run_server

    config = load_config(args.config)
    return run_server(config) if args.action == "serve" else run_mirror(config)


def _add_systemd(parser: argparse.ArgumentParser) -> None:
    from services.tools.systemd_units import add_arguments

    add_arguments(parser)


def _run_systemd(args: argparse.Namespace) -> int:
    from services.tools.systemd_units import run

    return run(args)


BENCHMARKS = (
    "journal",
    "md_recorder",
    "engine",
    "paper",
    "backtest",
    "indicators",
    "monitor",
    "relay",
    "ctp",
    "soak",
)


def _add_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=BENCHMARKS, help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its options (NAME --help)")


def _run_bench(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"bench.{args.name}")
    result: int = module.run(args.args)
    return result


def _add_doctor(parser: argparse.ArgumentParser) -> None:
    _config_argument(parser, required=False)
    parser.add_argument(
        "--ctp", action="store_true",
        help="also connect to each front of [engine.ctp], authenticate, log in and query the "
             "account, one line per step with CTP's answer (the password is never printed)",
    )  # fmt: skip


def _add_service(parser: argparse.ArgumentParser) -> None:
    _config_argument(parser)


def _add_backtest(parser: argparse.ArgumentParser) -> None:
    from services.tools.backtest import add_arguments

    add_arguments(parser)


def _run_backtest(args: argparse.Namespace) -> int:
    from services.tools.backtest import run

    return run(args)


COMMANDS: tuple[Command, ...] = (
    Command(
        "md-recorder",
        "record market data (CTP, simulated or replayed) into the tick journal",
        "hft md-recorder --config configs/live-ctp.example.toml",
        _add_service,
        _run_md_recorder,
    ),
    Command(
        "engine",
        "run strategy agents through the risk gate to CTP or the paper simulator",
        "hft engine --config configs/paper.toml",
        _add_service,
        _run_engine,
    ),
    Command(
        "command",
        "send a command to a running engine: halt, reduce, resume, cancel_all, flatten, status",
        "hft command --config configs/paper.toml halt --agent mm-if",
        _add_command,
        _run_command,
    ),
    Command(
        "monitor",
        "serve positions, orders and PnL over WebSocket and ZMQ, and the dashboard",
        "hft monitor --config configs/paper.toml",
        _add_service,
        _run_monitor,
    ),
    Command(
        "up",
        "start every service of a deployment in the foreground (for demos and rehearsals)",
        "hft up --config configs/paper.toml",
        _add_up,
        _run_up,
    ),
    Command(
        "relay",
        "serve this host's tick journals to other hosts, or mirror another host's (CURVE)",
        "hft relay serve --config configs/paper.toml",
        _add_relay,
        _run_relay,
    ),
    Command(
        "import",
        "import tick files (CTP CSV, vn.py CSV, any CSV with a mapping) into a journal",
        "hft import --format ctp-csv data/market/IF2101_20210104.csv.gz --out var/recordings",
        _add_import,
        _run_import,
    ),
    Command(
        "journal",
        "inspect, verify, print, export and repair journals (info, verify, cat, export, repair)",
        "hft journal verify var/recordings/20210104",
        _add_journal,
        _run_journal,
    ),
    Command(
        "backtest",
        "run the agents over recorded days in-process on the live engine's code: statistics, "
        "report, frames",
        "hft backtest --config configs/replay.toml --report var/report.html",
        _add_backtest,
        _run_backtest,
    ),
    Command(
        "systemd",
        "write the suite's systemd units with this machine's paths (install)",
        "hft systemd install --config /srv/hft/deploy.toml --user hft",
        _add_systemd,
        _run_systemd,
    ),
    Command(
        "doctor",
        "check that this machine can run the suite; one line per check, with the fix",
        "hft doctor --config configs/paper.toml",
        _add_doctor,
        _run_doctor,
    ),
    Command(
        "bench",
        "run a benchmark and print its figures (median of several runs)",
        "hft bench journal --runs 5",
        _add_bench,
        _run_bench,
    ),
)


def _build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """Every command is listed, but only the one named in ``argv`` gets its arguments: adding them
    imports that command's tool, and the others' imports (pandas, the engine) would cost each run
    of ``hft`` about a second."""
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(
        prog="hft",
        description=(
            "Live trading daemon suite for Chinese futures over CTP: md_recorder, engine, monitor."
        ),
        epilog=textwrap.dedent(
            """\
            examples:
              hft doctor --config configs/paper.toml   check this machine and a deployment
              hft up --config configs/paper.toml       run the paper-trading suite
              hft COMMAND --help                       help on one command
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        child = sub.add_parser(
            command.name,
            help=command.summary,
            description=command.summary[0].upper() + command.summary[1:] + ".",
            epilog=f"example:\n  {command.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        child.add_argument(
            "--log-level",
            choices=LEVELS,
            default="info",
            help="lowest level of log line to print (default: info)",
        )
        if command.name == chosen:
            command.add_arguments(child)
        child.set_defaults(command_spec=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hft`` console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _build_parser(argv)
    args = parser.parse_args(argv)
    spec: Command | None = getattr(args, "command_spec", None)
    if spec is None:
        parser.print_help()
        return 2
    configure(service=spec.name, level=args.log_level)
    try:
        code = spec.run(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is answered below
        return code
    except BrokenPipeError:
        # `hft ... | head`: the reader has what it wanted; stop quietly, as cat(1) does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
    except UserError as err:
        print(f"hft {spec.name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except JournalError as err:  # a damaged, full or locked journal met anywhere in a command
        print(f"hft {spec.name}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
