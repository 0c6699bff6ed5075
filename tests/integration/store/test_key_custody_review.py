"""Outside review of #14 point 1 (``callsec`` as a subprocess): a key the database never saw
is not adopted by an ordinary command. An inline ``[crypto] kek`` (KEK version 0) added to the
configuration or the environment of a database set up with key-ring files would otherwise be
recorded on the spot and wrap every new data key from then on (it takes precedence as the
current KEK), though it is in no key ring anyone backs up."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.integration.store.test_key_custody_cli import HANS, callsec, fingerprints, ok
from tests.integration.store.test_key_custody_cli import live as live


def test_an_unrecorded_inline_kek_is_refused_not_adopted(live: tuple[Path, str]) -> None:
    config, db_url = live
    before = fingerprints(db_url)
    other = {"CALLSEC_CRYPTO__KEK": base64.b64encode(os.urandom(32)).decode()}
    for command in (("customers", "add", *HANS), ("customers", "list")):
        result = callsec(config, *command, env=other)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "KEK version 0" in result.stderr and "keys init" in result.stderr
    assert fingerprints(db_url) == before  # nothing recorded
    assert len(ok(config, "customers", "list").split()) == 1  # nothing was added
