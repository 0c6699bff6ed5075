"""Where ``callsec`` finds its configuration when ``-c`` is not given.

In order, the first that exists: the file named by ``$CALLSEC_CONFIG``, the system-wide
``/etc/callsec/callsec.conf``, and ``./config/callsec.conf`` (the development tree). A
``$CALLSEC_CONFIG`` that names a missing file is an error, never skipped silently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from callsec_ari.config.sections import DEFAULT_CONFIG_PATH
from callsec_ari.core.errors import ConfigError

ENV_VAR = "CALLSEC_CONFIG"
SYSTEM_CONFIG_PATH = Path("/etc/callsec/callsec.conf")


def candidates(env: Mapping[str, str] | None = None) -> list[Path]:
    """The places looked at, in order."""
    env = os.environ if env is None else env
    places = [SYSTEM_CONFIG_PATH, DEFAULT_CONFIG_PATH]
    if env.get(ENV_VAR):
        places.insert(0, Path(env[ENV_VAR]))
    return places


def find_config(explicit: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``-c PATH`` if given, else the first candidate that exists; :class:`ConfigError` naming
    every place tried when none does."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ if env is None else env
    value = env.get(ENV_VAR)
    if value:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"{ENV_VAR}={value}: no such file")
        return path
    for path in candidates(env):
        if path.is_file():
            return path
    tried = ", ".join(str(p) for p in candidates(env))
    raise ConfigError(f"no configuration file found (tried {ENV_VAR}, {tried}); "
                      "give one with -c PATH")
