"""Envelope encryption: round trips, tamper detection, keyring files and versions."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callsec_ari.core.errors import ConfigError
from callsec_ari.store.crypto import DataKey, Envelope, Keyring
from callsec_ari.store.errors import DataKeyDestroyed, DecryptionFailed, KeyUnavailable

KEY = DataKey("dk-test", bytes(range(32)))
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)


@given(plaintext=st.binary(max_size=512), table=ids, column=ids, row=ids)
def test_encrypted_value_decrypts_to_the_same_bytes(plaintext: bytes, table: str, column: str,
                                                    row: str) -> None:
    blob = KEY.encrypt(plaintext, table=table, column=column, row_id=row)
    assert KEY.decrypt(blob, table=table, column=column, row_id=row) == plaintext


@settings(max_examples=200)
@given(plaintext=st.binary(min_size=1, max_size=64), data=st.data())
def test_any_flipped_byte_fails_to_decrypt(plaintext: bytes, data: st.DataObject) -> None:
    blob = bytearray(KEY.encrypt(plaintext, table="customers", column="name", row_id="C-1"))
    index = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    blob[index] ^= 1 << bit
    with pytest.raises(DecryptionFailed) as err:
        KEY.decrypt(bytes(blob), table="customers", column="name", row_id="C-1")
    assert err.value.details == {"table": "customers", "column": "name", "row": "C-1"}


@pytest.mark.parametrize("where", [
    {"table": "customers", "column": "email", "row_id": "C-1"},   # other column
    {"table": "customers", "column": "name", "row_id": "C-2"},    # other row
    {"table": "vault_items", "column": "name", "row_id": "C-1"},  # other table
])
def test_ciphertext_moved_to_another_cell_does_not_decrypt(where: dict[str, str]) -> None:
    blob = KEY.encrypt("Jürgen Müller", table="customers", column="name", row_id="C-1")
    with pytest.raises(DecryptionFailed) as err:
        KEY.decrypt(blob, **where)
    assert "Jürgen" not in str(err.value)
    assert where["row_id"] in str(err.value)


def test_ciphertext_under_another_key_id_does_not_decrypt() -> None:
    blob = KEY.encrypt("x", table="t", column="c", row_id="r")
    with pytest.raises(DecryptionFailed):
        DataKey("dk-other", KEY.secret).decrypt(blob, table="t", column="c", row_id="r")


def test_truncated_blob_is_rejected_not_decoded() -> None:
    with pytest.raises(DecryptionFailed, match="not a callsec ciphertext"):
        KEY.decrypt(b"\x01short", table="t", column="c", row_id="r")


def ring_with_kek(directory: Path) -> Keyring:
    ring = Keyring(directory)
    ring.add_version()
    return ring


def test_keyring_creates_first_kek_with_private_permissions(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    assert ring.add_version() == 1
    assert ring.current_version() == 1
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    key_file = tmp_path / "keys" / "kek-0001.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(base64.b64decode(key_file.read_text())) == 32


def test_keyring_never_creates_a_missing_key_on_use(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "none")
    with pytest.raises(KeyUnavailable, match=r"no key-encryption key.*callsec keys init"):
        ring.current_version()
    with pytest.raises(KeyUnavailable, match=r"blind-index key.*callsec keys init"):
        ring.blind_index_key()
    with pytest.raises(KeyUnavailable, match=r"audit HMAC key.*callsec keys init"):
        ring.audit_key()
    assert not (tmp_path / "none").exists()


def test_create_named_keys_creates_only_the_absent_ones(tmp_path: Path) -> None:
    ring = Keyring(tmp_path / "keys")
    assert ring.create_named_keys() == ["blind-index.key", "audit-hmac.key"]
    blind, audit = ring.blind_index_key(), ring.audit_key()
    assert ring.create_named_keys() == []
    assert (ring.blind_index_key(), ring.audit_key()) == (blind, audit)
    assert stat.S_IMODE((tmp_path / "keys" / "audit-hmac.key").stat().st_mode) == 0o600


def test_data_key_survives_rewrap_and_retired_kek_is_refused(tmp_path: Path) -> None:
    ring = ring_with_kek(tmp_path)
    env = Envelope(ring)
    key, wrapped = env.new_data_key()
    blob = key.encrypt("secret", table="t", column="c", row_id="r")
    assert ring.add_version() == 2
    rewrapped = env.rewrap(wrapped.key_id, wrapped.kek_version, wrapped.wrapped)
    assert rewrapped.kek_version == 2
    ring.retire(1)
    again = env.unwrap(rewrapped.key_id, 2, rewrapped.wrapped)
    assert again.decrypt_text(blob, table="t", column="c", row_id="r") == "secret"
    with pytest.raises(KeyUnavailable, match="KEK version 1") as err:
        env.unwrap(wrapped.key_id, 1, wrapped.wrapped)
    assert err.value.kek_version == 1


def test_wrapped_key_cannot_be_moved_to_another_key_id(tmp_path: Path) -> None:
    env = Envelope(ring_with_kek(tmp_path))
    _, wrapped = env.new_data_key("dk-a")
    with pytest.raises(DecryptionFailed, match="dk-b"):
        env.unwrap("dk-b", wrapped.kek_version, wrapped.wrapped)


def test_shredded_key_reports_destroyed(tmp_path: Path) -> None:
    with pytest.raises(DataKeyDestroyed):
        Envelope(Keyring(tmp_path)).unwrap("dk-x", 1, None)


def test_wrong_kek_file_is_named(tmp_path: Path) -> None:
    ring = ring_with_kek(tmp_path)
    env = Envelope(ring)
    _, wrapped = env.new_data_key()
    (tmp_path / "kek-0001.key").unlink()
    (tmp_path / "kek-0001.key").write_text(base64.b64encode(b"\1" * 32).decode())
    with pytest.raises(DecryptionFailed, match="KEK version 1"):  # as a restarted process sees it
        Envelope(Keyring(tmp_path)).unwrap(wrapped.key_id, 1, wrapped.wrapped)


def test_inline_kek_is_version_zero_and_cannot_rotate(tmp_path: Path) -> None:
    inline = base64.b64encode(b"\7" * 32).decode()
    ring = Keyring(tmp_path, inline_kek=inline)
    env = Envelope(ring)
    key, wrapped = env.new_data_key()
    assert wrapped.kek_version == 0
    assert env.unwrap(key.key_id, 0, wrapped.wrapped).secret == key.secret
    with pytest.raises(ConfigError, match="kek"):
        ring.add_version()


def test_malformed_inline_kek_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match=r"\[crypto\] kek"):
        Keyring(tmp_path, inline_kek="not-base64!")


def test_repr_of_data_key_hides_the_secret() -> None:
    assert "secret" not in repr(KEY) and str(bytes(range(32))) not in repr(KEY)
