from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from contracts.config import DeploymentConfig, load_config, parse_config
from contracts.errors import UserError
from tests.helpers import CONFIGS, PAPER_CONFIG, run_hft, write_config

SHIPPED = sorted(  # deployments
    p for p in CONFIGS.glob("*.toml") if p.name not in ("calendar.toml", "holidays.toml")
)


def test_three_configs_are_shipped() -> None:
    assert {p.name for p in SHIPPED} >= {"paper.toml", "replay.toml", "live-ctp.example.toml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, DeploymentConfig)
    # relative paths are taken from the config file's directory, never the working directory
    assert config.suite.journal_dir.is_absolute()


def test_mode_matches_shipped_purpose() -> None:
    assert load_config(CONFIGS / "paper.toml").suite.mode == "paper"
    assert load_config(CONFIGS / "replay.toml").md_recorder.source == "replay"
    live = load_config(CONFIGS / "live-ctp.example.toml")
    assert live.uses_ctp
    assert not load_config(CONFIGS / "paper.toml").uses_ctp


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    assert config.suite.journal_dir == tmp_path.resolve() / "journal"


def _error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        load_config(write_config(tmp_path, text))
    return str(info.value)


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    text = PAPER_CONFIG.replace('adapter = "paper"', 'adapter = "paper"\nadaptor = "ctp"')
    message = _error_for(tmp_path, text)
    assert message.count("\n") == 0
    assert "deploy.toml: engine.adaptor: unknown key; did you mean 'adapter'?" in message


def test_wrong_type_names_expected_and_found(tmp_path: Path) -> None:
    message = _error_for(tmp_path, PAPER_CONFIG.replace("port = 0", 'port = "8765"'))
    assert message == (
        f"{tmp_path / 'deploy.toml'}: monitor.port: expected a valid integer, found '8765' (str)"
    )


def test_wrong_value_names_choices(tmp_path: Path) -> None:
    message = _error_for(tmp_path, PAPER_CONFIG.replace('source = "sim"', 'source = "simulated"'))
    assert (
        "md_recorder.source: expected 'ctp', 'sim', 'replay' or 'relay', found 'simulated'"
        in message
    )


def test_missing_required_value(tmp_path: Path) -> None:
    message = _error_for(tmp_path, PAPER_CONFIG.replace('mode = "paper"\n', ""))
    assert message.endswith("deploy.toml: suite.mode: required value missing")


def test_inconsistent_mode_is_explained(tmp_path: Path) -> None:
    message = _error_for(tmp_path, PAPER_CONFIG.replace('mode = "paper"', 'mode = "live"'))
    assert "mode 'live' needs md_recorder.source = 'ctp'" in message


def test_source_needs_its_section(tmp_path: Path) -> None:
    text = PAPER_CONFIG.replace("[md_recorder.sim]\nseed = 1\n", "")
    assert "source = 'sim' needs a [md_recorder.sim] section" in _error_for(tmp_path, text)


def test_list_item_key_path(tmp_path: Path) -> None:
    text = PAPER_CONFIG + (
        '\n[[engine.agents]]\nname = "a"\nstrategy = "s:S"\ninstruments = ["IF2101"]\n'
        "capital = -1.0\n"
    )
    assert "engine.agents[0].capital: expected greater than 0" in _error_for(tmp_path, text)


def test_duplicate_agent_names(tmp_path: Path) -> None:
    agent = (
        '\n[[engine.agents]]\nname = "a"\nstrategy = "s:S"\ninstruments = ["IF2101"]\n'
        "capital = 1.0\n"
    )
    assert "repeated: a" in _error_for(tmp_path, PAPER_CONFIG + agent + agent)


def test_invalid_toml_gives_line(tmp_path: Path) -> None:
    message = _error_for(tmp_path, "[suite\nname = 1\n")
    assert "invalid TOML" in message
    assert "line 1" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_config_is_frozen() -> None:
    config = load_config(CONFIGS / "paper.toml")
    with pytest.raises(Exception, match="frozen"):
        config.suite.name = "x"  # type: ignore[misc]


def test_parse_config_in_memory() -> None:
    data = tomllib.loads(PAPER_CONFIG)
    config = parse_config(data, "<memory>", Path("/srv"))
    assert config.suite.shm_dir == Path("/srv/shm")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('adapter = "paper"', 'adapter = "paper"\nadaptor = 1'), "engine.adaptor"),
        (("port = 0", "port = true"), "monitor.port"),
        (('name = "t"\n', ""), "suite.name"),
    ],
    ids=["unknown-key", "wrong-type", "missing-value"],
)
def test_service_command_rejects_bad_config_with_exit_2(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    path = write_config(tmp_path, PAPER_CONFIG.replace(*change))
    done = run_hft("engine", "--config", str(path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0]
    assert key in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


AGENT = '\n[[engine.agents]]\nname = "a"\nstrategy = "s:S"\ninstruments = ["IF2101"]\n'
ENDPOINT = 'command_endpoint = "tcp://127.0.0.1:0"'


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            ENDPOINT,
            'command_endpoint = "tcp://127.0.0.1:70000"',
            "engine.command_endpoint: tcp://127.0.0.1:70000: a port is at most 65535",
        ),
        (
            'zmq_pub = "tcp://127.0.0.1:0"',
            'zmq_pub = "tcp://127.0.0.1:65536"',
            "monitor.zmq_pub: tcp://127.0.0.1:65536: a port is at most 65535",
        ),
        (
            ENDPOINT,
            'command_endpoint = "tcp://*:5560"',
            "engine: command_endpoint tcp://*:5560 is reachable from other machines and the token "
            "travels in clear; bind tcp://127.0.0.1:PORT or ipc://PATH, or set command_remote",
        ),
        (ENDPOINT, 'command_endpoint = "tcp://0.0.0.0:5560"', "command_remote = true"),
        ("", AGENT + "capital = inf\n", "engine.agents[0].capital: expected a finite number"),
        ("", AGENT + "capital = nan\n", "engine.agents[0].capital: expected a finite number"),
        (
            "seed = 1",
            "seed = 1\npace = nan",
            'md_recorder.sim.pace: expected a positive speed-up factor or "max", found nan',
        ),
        (
            "[engine]\n",
            '[engine]\nstrategy_paths = ["mine"]\n',
            "engine.strategy_paths[0]: {tmp}/mine is not a directory; create it or remove it",
        ),
        (
            "[engine]\n",
            "[engine]\nfeed_timeout_s = inf\n",
            "engine.feed_timeout_s: expected a finite number",
        ),
    ],
)
def test_config_holes_are_refused_in_one_line(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = PAPER_CONFIG.replace(old, new, 1) if old else PAPER_CONFIG + new
    assert text != PAPER_CONFIG
    message = _error_for(tmp_path, text)
    assert "\n" not in message
    assert expected.format(tmp=tmp_path.resolve()) in message, message


def test_a_remote_command_endpoint_needs_the_explicit_key(tmp_path: Path) -> None:
    text = PAPER_CONFIG.replace(
        ENDPOINT, 'command_endpoint = "tcp://*:5560"\ncommand_remote = true'
    )
    config = load_config(write_config(tmp_path, text))
    assert config.engine.command_endpoint == "tcp://*:5560" and config.engine.command_remote
    (tmp_path / "mine").mkdir()
    text = PAPER_CONFIG.replace("[engine]\n", '[engine]\nstrategy_paths = ["mine"]\n')
    assert load_config(write_config(tmp_path, text)).engine.strategy_paths == [tmp_path / "mine"]
