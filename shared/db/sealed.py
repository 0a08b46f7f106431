"""Personal data sealed at rest: AES-256-GCM with key ids, keyed hashes for look-ups, rotation."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# A sealed value is text: "enc:<key id>:<base64url(nonce | ciphertext | tag)>"; a keyed hash
# is "<key id>:<base64url(HMAC-SHA256)>". The key id travels with the value so several keys
# can be valid at once while rows are re-encrypted under the newest.
PREFIX = "enc:"
SEAL, HASH = "seal", "hash"
_NONCE = 12
_ID_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


class SealError(Exception):
    """A sealed value that cannot be opened: unknown key, tampered, or moved to another row."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DataKey:
    kind: str  # seal (AES-256-GCM) or hash (HMAC-SHA256)
    key_id: str
    secret: bytes = field(repr=False)


def new_key(kind: str) -> DataKey:
    """A fresh 256-bit key; the id starts with its creation time so the newest sorts last."""
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
    return DataKey(kind, f"{'d' if kind == SEAL else 'h'}{stamp}", secrets.token_bytes(32))


def parse_keys(text: str) -> list[DataKey]:
    """`<seal|hash> <key id> <base64 of 32 bytes>` a line (or separated by ';'), `#` comments."""
    keys = []
    lines = [part for raw in text.splitlines() for part in raw.split("#", 1)[0].split(";")]
    for line in lines:
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] not in (SEAL, HASH):
            raise ValueError("a data key line is '<seal|hash> <key id> <base64 key>'")
        kind, key_id, encoded = parts
        if not set(key_id) <= _ID_OK or len(key_id) > 40:
            raise ValueError(f"data key id {key_id[:40]!r}: letters, digits and '-' only")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise ValueError(f"data key {key_id}: not base64") from None
        if len(secret) != 32:
            raise ValueError(f"data key {key_id}: must be 32 bytes (AES-256, HMAC-SHA256)")
        keys.append(DataKey(kind, key_id, secret))
    return keys


def format_key(key: DataKey) -> str:
    return f"{key.kind} {key.key_id} {base64.b64encode(key.secret).decode('ascii')}\n"


class DataKeys:
    """A keyring of data keys: every listed key opens or matches; the last of each kind
    listed seals and hashes new values."""

    def __init__(self, keys: Sequence[DataKey]) -> None:
        self.seal_keys = {k.key_id: k for k in keys if k.kind == SEAL}
        self.hash_keys = {k.key_id: k for k in keys if k.kind == HASH}
        if not self.seal_keys or not self.hash_keys:
            raise ValueError("the data keys need at least one 'seal' and one 'hash' key")
        self.current_seal = [k for k in keys if k.kind == SEAL][-1]
        self.current_hash = [k for k in keys if k.kind == HASH][-1]
        # One cipher object per key, made once: building one per value cost as much as the
        # encryption itself on every sealed column of every event.
        self._aead = {k.key_id: AESGCM(k.secret) for k in self.seal_keys.values()}

    def _encrypt(self, data: bytes, context: str) -> tuple[str, bytes]:
        """(current key id, nonce | ciphertext | tag), the key id and `context` bound to it."""
        key = self.current_seal
        nonce = os.urandom(_NONCE)
        return key.key_id, nonce + self._aead[key.key_id].encrypt(
            nonce, data, f"{key.key_id}|{context}".encode())

    def _decrypt(self, key_id: str, blob: bytes, context: str) -> bytes:
        if key_id not in self.seal_keys:
            raise SealError(f"unknown data key {key_id[:40]}")
        try:
            return self._aead[key_id].decrypt(blob[:_NONCE], blob[_NONCE:],
                                              f"{key_id}|{context}".encode())
        except (InvalidTag, ValueError):
            # One message for all: which check failed tells an attacker nothing useful.
            raise SealError(f"sealed value does not open under {key_id} for its row "
                            "(tampered, or moved from another row)") from None

    def seal(self, plaintext: str, context: str) -> str:
        """Encrypt under the current key; `context` (table, column, row) is bound to it, so
        the value opens only where it was written."""
        key_id, blob = self._encrypt(plaintext.encode("utf-8"), context)
        return f"{PREFIX}{key_id}:{_b64(blob)}"

    def seal_raw(self, data: bytes, context: str) -> bytes:
        """Encrypt bytes that need not be text (a refused message may be anything): the same
        "enc:<key id>:" prefix, then nonce | ciphertext | tag unencoded."""
        key_id, blob = self._encrypt(data, context)
        return f"{PREFIX}{key_id}:".encode("ascii") + blob

    def open_raw(self, data: bytes, context: str) -> bytes:
        parts = data.split(b":", 2)
        if len(parts) != 3 or parts[0] != PREFIX[:-1].encode():
            raise SealError("not a sealed value")
        return self._decrypt(parts[1].decode("ascii", errors="replace"), parts[2], context)

    def key_of(self, value: str) -> str | None:
        """The key id a sealed value names (None: not sealed)."""
        if not value.startswith(PREFIX):
            return None
        return value[len(PREFIX):].split(":", 1)[0]

    def open(self, value: str, context: str) -> str:
        key_id = self.key_of(value)
        if key_id is None:
            raise SealError("not a sealed value")
        try:
            blob = _unb64(value[len(PREFIX) + len(key_id) + 1:])
        except (ValueError, binascii.Error):
            blob = b""  # refused below like any value that does not open
        return self._decrypt(key_id, blob, context).decode("utf-8")

    def _digest(self, key: DataKey, value: str, purpose: str) -> str:
        mac = hmac.new(key.secret, f"{purpose}\x00{value}".encode(), hashlib.sha256)
        return f"{key.key_id}:{_b64(mac.digest())}"

    def digest(self, value: str, purpose: str) -> str:
        """Keyed hash under the current hash key: what an equality look-up column stores."""
        return self._digest(self.current_hash, value, purpose)

    def digests(self, value: str, purpose: str) -> list[str]:
        """The value's hash under every valid hash key: a look-up matches rows not yet
        re-hashed under the newest (`= ANY($n)`)."""
        return [self._digest(k, value, purpose) for k in self.hash_keys.values()]


def read_keys_text(keys_env: str | None, keys_file: Path) -> str:
    """The environment's keys if set, else the secret file's (a secret mount in production)."""
    if keys_env:
        return keys_env
    try:
        return keys_file.read_text(encoding="ascii")
    except FileNotFoundError:
        raise SystemExit(
            f"no data keys: set MEDINS_DATA_KEYS or MEDINS_DATA_KEYS_FILE (looked for "
            f"{keys_file}); `medins data-keys create` makes a file") from None
    except OSError as exc:
        raise SystemExit(f"cannot read the data keys file {keys_file}: {exc.strerror}"
                         ) from None


def create_keys_file(path: Path) -> bool:
    """A new file with one key of each kind, readable by its owner only; False if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write("# medins data keys (secret): <seal|hash> <key id> <base64 key>; the last of"
                  " each kind is current\n")
        out.write(format_key(new_key(SEAL)) + format_key(new_key(HASH)))
    return True


def add_key(path: Path, kind: str) -> DataKey:
    """Append a new key of `kind` to the file: it becomes the current one."""
    key = new_key(kind)
    parse_keys(path.read_text(encoding="ascii"))  # never append to a file we cannot read
    with path.open("a", encoding="ascii") as out:
        out.write(format_key(key))
    return key


def remove_key(path: Path, key_id: str) -> None:
    text = path.read_text(encoding="ascii")
    kept = [line for line in text.splitlines(keepends=True)
            if line.split("#", 1)[0].split()[1:2] != [key_id]]
    DataKeys(parse_keys("".join(kept)))  # refuses to leave a kind without a key
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write("".join(kept))
    tmp.replace(path)


class _Source:
    """The process's keyring, re-read when the file changes (rotation needs no restart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: DataKeys | None = None
        self._fixed = False
        self._stamp: float | None = None
        self._checked = 0.0
        self._env: str | None = None
        self._file: Path | None = None

    def configure(self, keys_env: str | None, keys_file: Path) -> None:
        with self._lock:
            self._env, self._file, self._keys, self._fixed = keys_env, keys_file, None, False

    def use(self, keys: DataKeys | None) -> None:
        """Fixed keys (unit tests), or None to go back to the settings."""
        with self._lock:
            self._keys, self._fixed = keys, keys is not None
            if keys is None:
                self._env = self._file = None

    def _settings(self) -> None:
        from shared.settings import PlatformSettings

        settings = PlatformSettings()
        secret = settings.data_keys.get_secret_value() if settings.data_keys else None
        self._env, self._file = secret, settings.data_keys_path()

    def get(self, force: bool = False) -> DataKeys:
        with self._lock:
            if self._fixed and self._keys is not None:
                return self._keys
            if self._file is None:
                self._settings()
            assert self._file is not None
            now = time.monotonic()
            if self._keys is not None and not force and now - self._checked < 2.0:
                return self._keys
            self._checked = now
            stamp = None if self._env else _mtime(self._file)
            if self._keys is None or stamp != self._stamp:
                self._keys = DataKeys(parse_keys(read_keys_text(self._env, self._file)))
                self._stamp = stamp
            return self._keys


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime_ns / 1e9
    except FileNotFoundError:
        return None


_source = _Source()
configure = _source.configure
use_keys = _source.use


def keys() -> DataKeys:
    return _source.get()


def _open(value: str, context: str) -> str:
    ring = keys()
    key_id = ring.key_of(value)
    if key_id is not None and key_id not in ring.seal_keys:
        # Sealed a moment ago under a key another process just added: re-read once.
        ring = _source.get(force=True)
    return ring.open(value, context)


@dataclass(frozen=True)
class Sealed:
    """One sealed column (or one field of a jsonb column) of a service's schema.

    `row` names the columns whose values bind a ciphertext to its row (the context also
    names table and column), so a value copied onto another person's row does not open; an
    entry that is itself a `Sealed` column (a person's sealed ID kept beside its keyed
    hash) binds to that column's opened value.
    `shape`: `text` (a text column), `bytes` (a bytea column of UTF-8 text, e.g. a kept
    event), `json` (a whole jsonb value, stored as a jsonb string) or `json:<field>` (one
    field of a jsonb object). `hash_column` keeps a keyed hash of the plaintext for
    equality look-ups and unique keys; `hash_purpose` makes that hash the same in every
    table that names the same purpose (a resident ID: tables are joined on it), where
    otherwise it is bound to its own table and row.
    """

    table: str
    column: str
    row: tuple[str | Sealed, ...]
    shape: str = "text"
    hash_column: str | None = None
    hash_purpose: str | None = None

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}" + (f".{self.shape[5:]}"
                                                if self.shape.startswith("json:") else "")

    def context(self, row: Sequence[Any]) -> str:
        # JSON, not a joined string: ("a/b", "c") and ("a", "b/c") must not bind alike.
        return f"{self.name}:" + _json_list([None if v is None else str(v) for v in row])

    def seal(self, value: str | None, *row: Any) -> str | None:
        return None if value is None else keys().seal(value, self.context(row))

    def open(self, value: str | None, *row: Any) -> str | None:
        """The plaintext; a value without the prefix is legacy plaintext not yet sealed (the
        worker seals those at start), read as it is."""
        if value is None or not value.startswith(PREFIX):
            return value
        return _open(value, self.context(row))

    def seal_bytes(self, value: bytes, *row: Any) -> bytes:
        return str(self.seal(value.decode("utf-8"), *row)).encode("ascii")

    def open_bytes(self, value: bytes, *row: Any) -> bytes:
        return str(self.open(bytes(value).decode("utf-8"), *row)).encode("utf-8")

    def seal_json(self, value: Any, *row: Any) -> str:
        """The jsonb parameter (JSON text of a sealed string) for a `json` shape."""
        return json.dumps(self.seal(json.dumps(value, ensure_ascii=False, default=str), *row))

    def open_json(self, stored: Any, *row: Any) -> Any:
        """A jsonb value as read (text, or already decoded): the sealed JSON opened."""
        value = json.loads(stored) if isinstance(stored, str | bytes) else stored
        if isinstance(value, str) and value.startswith(PREFIX):
            return json.loads(_open(value, self.context(row)))
        return value

    def digest(self, value: str | None, *row: Any) -> str | None:
        """Keyed hash for look-ups, bound to the row's context too: equal values of two
        people do not show as equal hashes."""
        return None if value is None else keys().digest(value, self._purpose(row))

    def digests(self, value: str, *row: Any) -> list[str]:
        return keys().digests(value, self._purpose(row))

    def _purpose(self, row: Sequence[Any]) -> str:
        return self.hash_purpose or self.context(row)


# Every table that keeps a resident ID keeps its keyed hash under this one purpose, so the
# same person has the same `person_key` in each of a service's tables (and in each service).
RESIDENT_ID = "resident-id"


def resident_id_column(table: str, column: str = "person_ref",
                       hash_column: str = "person_key") -> Sealed:
    """A table's resident ID: sealed in `column` (to re-hash under a new key, and for the
    rare job that must name the person), found by its keyed hash in `hash_column`."""
    return Sealed(table, column, (), hash_column=hash_column, hash_purpose=RESIDENT_ID)


def resident_key(person_id: str) -> str:
    """The keyed hash a new row stores for a resident ID (under the current hash key)."""
    return keys().digest(person_id, RESIDENT_ID)


def resident_keys(person_id: str) -> list[str]:
    """The resident ID's hash under every valid hash key: look-ups use `= ANY($n)`, so
    rows not yet re-hashed after a key rotation are still found."""
    return keys().digests(person_id, RESIDENT_ID)


def resident_owners(person_ids: Iterable[str]) -> dict[str, str]:
    """Every valid hash of each ID -> the ID: its keys are a set-based look-up's `= ANY`
    list, and it tells each row found which person it belongs to (no sealed ID opened)."""
    return {key: pid for pid in person_ids for key in resident_keys(pid)}


def resident_keys_of(person_ids: Iterable[str]) -> list[str]:
    """Every valid hash of each of several IDs, for one set-based `= ANY($n)` look-up."""
    return [k for pid in person_ids for k in resident_keys(pid)]


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def _json_list(values: list[str | None]) -> str:
    """`json.dumps(values, ensure_ascii=False)`, byte for byte (values already sealed are
    bound to it), without the encoder's cost on every seal and open when no value needs
    escaping (IDs, event ids, codes: nearly always)."""
    if any(v is not None and _NEEDS_ESCAPE.search(v) for v in values):
        return json.dumps(values, ensure_ascii=False)
    return "[" + ", ".join("null" if v is None else f'"{v}"' for v in values) + "]"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stored_sql(col: Sealed) -> str:
    """SQL giving the stored value as text: the sealed text, or the legacy plaintext (for
    jsonb, its JSON text)."""
    if col.shape == "text":
        return _q(col.column)
    if col.shape == "bytes":
        return f"convert_from({_q(col.column)}, 'UTF8')"
    if col.shape == "json":
        return f"{_q(col.column)}::text"
    return f"({_q(col.column)} -> '{col.shape[5:]}')::text"


def _key_sql(col: Sealed) -> str:
    """SQL giving the key id of a sealed value, or '(plaintext)'."""
    text = _stored_sql(col) if col.shape in ("text", "bytes") else (
        f"({_q(col.column)} #>> '{{}}')" if col.shape == "json"
        else f"({_q(col.column)} ->> '{col.shape[5:]}')")
    return (f"CASE WHEN {text} LIKE 'enc:%' THEN split_part({text}, ':', 2)"
            f" ELSE '(plaintext)' END")


def _present_sql(col: Sealed) -> str:
    if col.shape.startswith("json:"):
        return f"{_q(col.column)} ? '{col.shape[5:]}'"
    return f"{_q(col.column)} IS NOT NULL"


def _plaintext_of(col: Sealed, stored: str, row: Sequence[Any]) -> str:
    if col.shape in ("text", "bytes"):
        return stored if not stored.startswith(PREFIX) else _open(stored, col.context(row))
    value = json.loads(stored)
    if isinstance(value, str) and value.startswith(PREFIX):
        return _open(value, col.context(row))
    return json.dumps(value, ensure_ascii=False)


async def reseal(conn: asyncpg.Connection, col: Sealed, batch: int = 500,
                 plaintext_only: bool = False) -> int:
    """Seal, in batches of one transaction each, the rows of one column that are plaintext
    or (unless `plaintext_only`) under an older key or hash key; returns rows changed.
    Idempotent, and safe beside running workers (rows they hold are skipped, then done)."""
    ring = _source.get(force=True)
    key_cols = "".join(f"{_q(c.column if isinstance(c, Sealed) else c)}, " for c in col.row)
    stale = (f"({_key_sql(col)}) = '(plaintext)'" if plaintext_only
             else f"NOT (({_key_sql(col)}) = '{ring.current_seal.key_id}')")
    if col.hash_column and not plaintext_only:
        stale = (f"({stale} OR {_q(col.hash_column)} IS NULL OR "
                 f"{_q(col.hash_column)} NOT LIKE '{ring.current_hash.key_id}:%')")
    elif col.hash_column:
        stale = f"({stale} OR {_q(col.hash_column)} IS NULL)"
    if col.shape == "text":
        target = "$2"
    elif col.shape == "bytes":
        target = "convert_to($2::text, 'UTF8')"
    elif col.shape == "json":
        target = "to_jsonb($2::text)"
    else:
        target = f"jsonb_set({_q(col.column)}, '{{{col.shape[5:]}}}', to_jsonb($2::text))"
    sets = f"{_q(col.column)} = {target}"
    if col.hash_column:
        sets += f", {_q(col.hash_column)} = $3"
    select = (f"SELECT ctid, {key_cols}{_stored_sql(col)} AS stored FROM {_q(col.table)}"
              f" WHERE {_present_sql(col)} AND {stale} LIMIT {int(batch)}"
              f" FOR UPDATE SKIP LOCKED")
    update = f"UPDATE {_q(col.table)} SET {sets} WHERE ctid = $1"
    total = 0
    while True:
        async with conn.transaction():
            rows = await conn.fetch(select)
            for r in rows:
                key = [c.open(r[c.column]) if isinstance(c, Sealed) else r[c]
                       for c in col.row]
                plain = _plaintext_of(col, r["stored"], key)
                args: list[Any] = [r["ctid"], ring.seal(plain, col.context(key))]
                if col.hash_column:
                    args.append(ring.digest(plain, col.hash_purpose or col.context(key)))
                await conn.execute(update, *args)
        total += len(rows)
        if len(rows) < batch:
            return total


async def key_counts(conn: asyncpg.Connection, col: Sealed) -> dict[str, int]:
    """Rows per data key id (and '(plaintext)'), plus hash keys as 'hash <id>'."""
    found = {r["k"]: r["n"] for r in await conn.fetch(
        f"SELECT {_key_sql(col)} AS k, count(*) AS n FROM {_q(col.table)}"
        f" WHERE {_present_sql(col)} GROUP BY 1")}
    if col.hash_column:
        for r in await conn.fetch(
                f"SELECT coalesce(split_part({_q(col.hash_column)}, ':', 1), '(none)') AS k,"
                f" count(*) AS n FROM {_q(col.table)} WHERE {_present_sql(col)} GROUP BY 1"):
            found[f"hash {r['k']}"] = r["n"]
    return found


def columns_in_use(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Rows per key id over many columns (hash keys by their id, too)."""
    total: dict[str, int] = {}
    for found in counts:
        for name, n in found.items():
            key = name.removeprefix("hash ")
            total[key] = total.get(key, 0) + n
    return total


__all__ = ["DataKey", "DataKeys", "HASH", "PREFIX", "RESIDENT_ID", "SEAL", "SealError", "Sealed",
           "add_key", "resident_id_column", "resident_key", "resident_keys", "resident_keys_of",
           "resident_owners",
           "columns_in_use", "configure", "create_keys_file", "key_counts", "keys",
           "new_key", "parse_keys", "remove_key", "reseal", "use_keys"]
