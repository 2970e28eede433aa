"""The re-identification vault: what each pseudonym stands for, kept apart and encrypted.

PS3.15 E.1.1 lets a de-identifier keep the link between original and de-identified values
"in a secure manner" so that an authorized party can re-identify. The vault is that place:

* its own SQLite file, at a path the caller chooses, apart from the job store's database (whoever
  reads the job store learns nothing from it);
* every value encrypted with AES-256-GCM under a key derived from the caller's 32-byte key
  (HKDF-SHA256), with a fresh 96-bit nonce per value and the row's role as associated data;
* rows found by HMAC-SHA256 of ``kind`` and value under a second derived key, so that nothing
  is stored in clear — not the originals, not the pseudonyms, not even the kinds;
* a key check (an HMAC of a constant) written when the vault is created: another key is refused
  with :class:`VaultKeyError` before anything is read or written.

Typical use::

    key = key_from_file(Path("/secure/deid.key"))          # created 0600 when missing
    with ReidentificationVault(Path("/secure/reid.sqlite"), key) as vault:
        vault.record_all(deidentified.mappings)
        vault.reidentify("patient_id", "DEID-0123456789ABCDEF0123")   # -> the original ID

Kinds are those of :class:`~dicom_gateway.deid.deidentify.MappingKind` (any short string is
accepted). For ``date_offset`` the "original" is the offset in days and the "pseudonym" the
patient's pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import stat
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dicom_gateway.deid.deidentify import DeidentificationError, Mapping

__all__ = [
    "KEY_BYTES",
    "ReidentificationVault",
    "VaultEntryNotFoundError",
    "VaultError",
    "VaultKeyError",
    "key_from_file",
]

KEY_BYTES = 32
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mapping ("
    " pseudonym_mac BLOB PRIMARY KEY,"
    " original_mac BLOB NOT NULL,"
    " original BLOB NOT NULL,"
    " pseudonym BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mapping_original ON mapping (original_mac)",
)
_KEY_CHECK = b"preread re-identification vault v1"


class VaultError(DeidentificationError):
    """The re-identification vault cannot do what was asked."""


class VaultKeyError(VaultError):
    """The key does not open this vault, or a key file is unusable."""


class VaultEntryNotFoundError(VaultError, KeyError):
    """The vault holds no entry of that kind for that pseudonym."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def key_from_file(path: Path) -> bytes:
    """The 32-byte vault key in ``path``; a new random key is written (mode 0600) if missing.

    Raises:
        VaultKeyError: the file is readable or writable by group or others, or does not hold
            exactly 32 bytes.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise VaultKeyError(
            f"key file {path} is open to group or others (mode {mode:04o}); chmod 600 it"
        )
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise VaultKeyError(f"key file {path} holds {len(key)} bytes, not {KEY_BYTES}")
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


class ReidentificationVault:
    """Original ↔ pseudonym pairs in an encrypted SQLite file (see the module docstring).

    Args:
        path: the vault file; created (mode 0600) when missing.
        key: 32 bytes (:func:`key_from_file`).

    Raises:
        VaultKeyError: ``key`` is not 32 bytes, or not the key this vault was created with.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise VaultKeyError(f"the vault key must have {KEY_BYTES} bytes, not {len(key)}")
        self.path = Path(path)
        self._aead = AESGCM(_derive(key, b"preread vault encryption"))
        self._mac_key = _derive(key, b"preread vault lookup")
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._db = sqlite3.connect(self.path)
        try:
            with self._db:
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._check_key()
        except BaseException:
            self._db.close()
            raise

    def _check_key(self) -> None:
        check = hmac.new(self._mac_key, _KEY_CHECK, hashlib.sha256).digest()
        row = self._db.execute("SELECT value FROM meta WHERE name = 'key_check'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta (name, value) VALUES ('key_check', ?)", (check,))
        elif not hmac.compare_digest(bytes(row[0]), check):
            raise VaultKeyError(f"the key does not open the vault {self.path}")

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> ReidentificationVault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _mac(self, role: str, kind: str, value: str) -> bytes:
        message = f"{role}\0{kind}\0{value}".encode()
        return hmac.new(self._mac_key, message, hashlib.sha256).digest()

    def _seal(self, role: bytes, row: bytes, value: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), role + b"\0" + row)

    def _open(self, role: bytes, row: bytes, sealed: bytes) -> str:
        try:
            plain = self._aead.decrypt(sealed[:12], sealed[12:], role + b"\0" + row)
        except InvalidTag as exc:
            raise VaultKeyError(f"an entry of {self.path} does not decrypt: wrong key?") from exc
        return plain.decode()

    def record(self, kind: str, original: str, pseudonym: str) -> None:
        """Store that ``pseudonym`` (of ``kind``) stands for ``original``; idempotent.

        Raises:
            VaultError: the pseudonym is already recorded for another original.
        """
        self._insert(kind, original, pseudonym)
        self._db.commit()

    def record_all(self, mappings: Iterable[Mapping]) -> None:
        """:meth:`record` each mapping (e.g. ``DeidentifiedInstance.mappings``), in one
        transaction."""
        try:
            for m in mappings:
                self._insert(str(m.kind), m.original, m.pseudonym)
        except BaseException:
            self._db.rollback()
            raise
        self._db.commit()

    def _insert(self, kind: str, original: str, pseudonym: str) -> None:
        row = self._mac("pseudonym", kind, pseudonym)
        existing = self._db.execute(
            "SELECT original FROM mapping WHERE pseudonym_mac = ?", (row,)
        ).fetchone()
        if existing is not None:
            if self._open(b"original", row, bytes(existing[0])) != original:
                raise VaultError(f"a {kind} pseudonym is already recorded for another original")
            return
        self._db.execute(
            "INSERT INTO mapping (pseudonym_mac, original_mac, original, pseudonym)"
            " VALUES (?, ?, ?, ?)",
            (
                row,
                self._mac("original", kind, original),
                self._seal(b"original", row, original),
                self._seal(b"pseudonym", row, pseudonym),
            ),
        )

    def reidentify(self, kind: str, pseudonym: str) -> str:
        """The original value that ``pseudonym`` of ``kind`` replaced.

        Raises:
            VaultEntryNotFoundError: nothing recorded for it.
            VaultKeyError: the entry does not decrypt.
        """
        row = self._mac("pseudonym", kind, pseudonym)
        found = self._db.execute(
            "SELECT original FROM mapping WHERE pseudonym_mac = ?", (row,)
        ).fetchone()
        if found is None:
            raise VaultEntryNotFoundError(f"no {kind} entry for that pseudonym in {self.path}")
        return self._open(b"original", row, bytes(found[0]))

    def pseudonym_for(self, kind: str, original: str) -> str | None:
        """The pseudonym recorded for ``original`` of ``kind``, or None."""
        found = self._db.execute(
            "SELECT pseudonym_mac, pseudonym FROM mapping WHERE original_mac = ?",
            (self._mac("original", kind, original),),
        ).fetchone()
        if found is None:
            return None
        return self._open(b"pseudonym", bytes(found[0]), bytes(found[1]))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM mapping").fetchone()[0])
