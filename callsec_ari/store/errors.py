"""Errors of the encrypted store. Messages name tables, columns, row ids, key ids and KEK
versions, never a value (no names, numbers, keys or passwords)."""

from __future__ import annotations

from callsec_ari.core.errors import (
    CallsecError,
    ConfigError,
    ErrorId,
    Forbidden,
    NotFound,
    Unavailable,
)


class KeyUnavailable(CallsecError):
    """A key-encryption key (or the blind-index / audit key) is missing, retired or malformed."""

    error_id = ErrorId.KEY_UNAVAILABLE
    status = 500

    def __init__(self, message: str, *, kek_version: int | None = None) -> None:
        super().__init__(message, details={"kek_version": kek_version})
        self.kek_version = kek_version


class DecryptionFailed(CallsecError):
    """A ciphertext did not authenticate: tampered, moved to another row/column, or the key
    is wrong. Never returns garbage plaintext."""

    error_id = ErrorId.DECRYPTION_FAILED
    status = 500

    def __init__(self, table: str, column: str, row_id: str, reason: str = "authentication failed"
                 ) -> None:
        super().__init__(f"cannot decrypt {table}.{column} of row {row_id}: {reason}",
                         details={"table": table, "column": column, "row": row_id})
        self.table, self.column, self.row_id = table, column, row_id


class DataKeyDestroyed(DecryptionFailed):
    """The row's data key was crypto-shredded (GDPR erasure or retention purge)."""

    error_id = ErrorId.DATA_KEY_DESTROYED


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached; names the host (or SQLite file), never the password."""

    error_id = ErrorId.DATABASE_UNAVAILABLE

    def __init__(self, where: str, reason: str = "unreachable") -> None:
        super().__init__(f"database at {where} is {reason}", details={"where": where})
        self.where = where


class VaultRefused(Forbidden):
    """The vault refuses to store this kind of value (CVV, by design: PCI DSS 3.2)."""

    error_id = ErrorId.VAULT_REFUSED
    status = 422


class CustomerErased(NotFound):
    """The customer existed but was erased (GDPR); only a tombstone is left."""

    error_id = ErrorId.CUSTOMER_ERASED
    status = 410


class SchemaOutdated(ConfigError):
    """The database is behind the newest migration and this command does not migrate (only
    ``callsec run`` and ``callsec db upgrade`` do): exit 2, naming both revisions."""

    error_id = ErrorId.SCHEMA_OUTDATED

    def __init__(self, current: str | None, head: str | None) -> None:
        if current is None:  # a new database: set it up as the README says
            message = (f"database is empty (no schema), callsec needs revision {head}: run "
                       "`callsec db upgrade`, then `callsec keys init`")
        else:
            message = (f"database is at revision {current}, callsec needs {head}: run "
                       "`callsec db upgrade`")
        super().__init__(message)
        self.current, self.head = current, head
