"""``hft engine`` with the CTP adapter against the venue of ``adapters/ctp/venue.py`` (a front and
exchange that outlive the process): the live service itself, its adapter's ``TraderApi`` the
venue. ``python -m tests.services.engine.ctp_engine CONFIG VENUE_DIR``; the SIGKILL test of
``test_ctp_live.py`` runs it."""

from __future__ import annotations

import sys
from pathlib import Path

from contracts.config import load_config
from contracts.logs import configure, get_logger
from services.engine.ctp_link import ctp_factory
from services.engine.live import EngineService
from tests.services.engine.adapters.ctp.venue import Venue


def main(config_path: str, venue: str) -> int:
    configure(service="engine", level="warning")
    config = load_config(config_path)
    root = Path(venue)
    factory = ctp_factory(config, get_logger(service="engine"),
                          api_factory=lambda _flow_path: Venue(root))  # fmt: skip
    return EngineService(config, adapter_factory=factory).run()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
