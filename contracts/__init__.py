"""Contracts shared by every service: configuration models, credentials, logging, clock, errors.

Layering: ``services -> contracts -> libshm``. Nothing here imports a service, and nothing here
opens a socket or starts a thread; services wire these pieces to the outside world.
"""

from contracts.clock import Clock, FakeClock, LiveClock
from contracts.config import DeploymentConfig, load_config
from contracts.credentials import Credentials, load_credentials
from contracts.errors import UserError

__all__ = [
    "Clock",
    "Credentials",
    "DeploymentConfig",
    "FakeClock",
    "LiveClock",
    "UserError",
    "load_config",
    "load_credentials",
]
