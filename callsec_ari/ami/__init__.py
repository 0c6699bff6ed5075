"""callsec's AMI layer (panoramisk 1.4 behind our own small interface).

- :mod:`callsec_ari.ami.manager`: :class:`AmiManager`, one connection: ``MixMonitorMute``,
  ``Getvar``, ``GetConfig``, ``ModuleCheck``, ``Command`` and event subscriptions.
- :mod:`callsec_ari.ami.link`: :class:`AmiLink`, the application's connection with reconnects
  (``Application.ami``).
- :mod:`callsec_ari.ami.messages`: events, subscriptions, ``GetConfig`` categories.
- :mod:`callsec_ari.ami.errors`: :class:`AmiError` and its subclasses.
"""

from callsec_ari.ami.errors import (
    AmiActionError,
    AmiAuthError,
    AmiConfigNotFound,
    AmiConnectionError,
    AmiError,
    AmiNoSuchChannel,
    AmiPermissionError,
)
from callsec_ari.ami.link import AmiLink
from callsec_ari.ami.manager import (
    AmiEvent,
    AmiManager,
    AmiSubscription,
    ConfigCategory,
    Direction,
    MuteOutcome,
)

__all__ = [
    "AmiActionError",
    "AmiAuthError",
    "AmiConfigNotFound",
    "AmiConnectionError",
    "AmiError",
    "AmiEvent",
    "AmiLink",
    "AmiManager",
    "AmiNoSuchChannel",
    "AmiPermissionError",
    "AmiSubscription",
    "ConfigCategory",
    "Direction",
    "MuteOutcome",
]
