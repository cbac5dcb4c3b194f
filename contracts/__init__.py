"""Contracts shared by every service: configuration models, credentials, logging, clock, errors.

Layering: ``services -> contracts -> libshm``. Nothing here imports a service, and nothing here
opens a socket or starts a thread; services wire these pieces to the outside world.
"""

from contracts.clock import CHINA, china_iso
from contracts.config import DeploymentConfig, load_config
from contracts.credentials import Credentials, load_credentials
from contracts.errors import UserError

__all__ = [
    "CHINA",
    "Credentials",
    "DeploymentConfig",
    "UserError",
    "china_iso",
    "load_config",
    "load_credentials",
]
