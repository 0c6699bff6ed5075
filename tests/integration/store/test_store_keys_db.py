"""KEK rotation and retirement against a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from store_helpers import jurgen

from callsec_ari.config import Settings
from callsec_ari.store.context import Store, open_store
from callsec_ari.store.custody import KeyRingMismatch, kek_fingerprint
from callsec_ari.store.errors import KeyUnavailable
from callsec_ari.store.models import DataKeyRow


def test_data_written_before_rotation_still_reads(store: Store) -> None:
    c = store.customers.create(jurgen())
    v = store.vault.put("card_number", "4111111111111111", call_id="call-1")
    report = store.keys.rotate()
    assert (report.new_version, report.rewrapped) == (2, 2)
    assert store.keys.counts_by_version() == {2: 2}
    assert store.customers.get(c.ref) == c
    assert store.vault.masked(v) == "•••• 1111"


def test_retired_kek_refuses_old_wrapped_keys_by_version(store: Store) -> None:
    c = store.customers.create(jurgen())
    with store.db.session() as s:
        old = s.scalars(select(DataKeyRow)).one()
        old_wrapped, key_id = old.wrapped, old.key_id
    store.keys.rotate(retire=1)
    assert store.keyring.versions() == [2]
    assert store.customers.get(c.ref).name == c.name
    with store.db.session() as s:  # a backup restored from before the rotation
        row = s.get(DataKeyRow, key_id)
        assert row is not None
        row.kek_version, row.wrapped = 1, old_wrapped
    with pytest.raises(KeyUnavailable, match="KEK version 1") as err:
        store.customers.get(c.ref)
    assert err.value.kek_version == 1


def test_retiring_a_kek_still_in_use_is_refused(store: Store) -> None:
    store.customers.create(jurgen())
    store.keyring.add_version()  # a new KEK without re-wrapping
    with pytest.raises(KeyUnavailable, match="still wraps 1 data keys"):
        store.keys.retire(1)
    assert 1 in store.keyring.versions()


def test_new_keys_are_wrapped_with_the_newest_kek(store: Store) -> None:
    assert store.keyring.current_version() == 1
    store.keys.rotate()
    store.customers.create(jurgen())
    assert store.keys.counts_by_version() == {2: 1}


def test_missing_kek_is_refused_at_open_naming_it(store: Store, settings: Settings) -> None:
    store.customers.create(jurgen())
    expected = kek_fingerprint(store.keyring, 1)
    (store.keyring.directory / "kek-0001.key").unlink()
    with pytest.raises(KeyRingMismatch, match=f"KEK version 1 \\(expected fingerprint "
                       f"{expected}\\) is missing"):
        open_store(settings)
    assert not (store.keyring.directory / "kek-0001.key").exists()  # nothing recreated
