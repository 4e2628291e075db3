"""Personal data encrypted with a key per data subject (a customer), so that destroying the key
erases the data everywhere it was copied: events, read models, backups (crypto-shredding).

- A field is sealed to a self-describing string, ``pd:v1:<key id>:<base64url(nonce|ct|tag)>``
  (AES-256-GCM, the subject's id as associated data). A string without that prefix is
  plaintext written before encryption existed, and reads as itself.
- Opening a field whose key is gone (destroyed, or replaced by a new key after an erasure:
  the key id tells them apart) gives ``ERASED``: a plain string, so every model that requires
  the field still validates and events written before the erasure still replay.
- Keys live in the service's own database (``customer_keys``), created in the caller's
  transaction; `KeyWrapper` is where a KMS wraps them in production (envelope encryption).
- Blind indexes (HMAC-SHA256 of a normalised email or phone with a service secret) let a
  service find a subject by contact without storing the contact in clear.

Keys are cached per process for `SubjectKeys.ttl` seconds: an erasure reaches another replica
of the service within that time. A key is cached only once the transaction that created it
has committed, so a rolled-back key never encrypts anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from libs.runtime.db import ConcurrencyConflict, Sql

PREFIX = "pd:v1:"
# What an erased field reads as. A string (not None) so that required fields stay valid.
ERASED = "[erased]"
_NONCE_BYTES = 12


class PersonalDataError(Exception):
    """A sealed field could not be opened with the key that should open it (corrupted, or
    sealed for another subject): a fault to look at, never reported as an erasure."""


class KeyWrapper(Protocol):
    """Wraps data keys before they are stored and unwraps them when read.

    Production points this at a KMS (AWS KMS Encrypt/Decrypt, Vault transit, Google Cloud
    KMS): the database then holds only wrapped keys, and revoking the service's KMS access
    makes the whole table useless. Unwrap runs once per key and cache period, not per field.
    """

    async def wrap(self, subject: str, data_key: bytes) -> bytes: ...

    async def unwrap(self, subject: str, wrapped: bytes) -> bytes: ...


class StoredInDatabase:
    """No wrapping: keys are stored as they are, in the service's database. Whoever can read
    that database can read the keys (and so the personal data); fine for development, and
    for production only where the database itself is the trust boundary."""

    async def wrap(self, subject: str, data_key: bytes) -> bytes:
        return data_key

    async def unwrap(self, subject: str, wrapped: bytes) -> bytes:
        return wrapped


@dataclass(frozen=True)
class SubjectKey:
    subject: str
    key_id: str
    secret: bytes


def new_key(subject: str) -> SubjectKey:
    return SubjectKey(subject, secrets.token_hex(4), AESGCM.generate_key(bit_length=256))


def _aad(subject: str) -> bytes:
    return f"ordermesh:pd:v1:{subject}".encode()


def is_sealed(value: str | None) -> bool:
    return value is not None and value.startswith(PREFIX)


def seal(key: SubjectKey, value: str | None) -> str | None:
    """`value` encrypted for `key`'s subject; None stays None (nothing to hide)."""
    if value is None:
        return None
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key.secret).encrypt(nonce, value.encode(), _aad(key.subject))
    return f"{PREFIX}{key.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(key: SubjectKey | None, value: str | None) -> str | None:
    """The plaintext of a field: itself if it was never sealed, ERASED if its key is gone."""
    if value is None or not value.startswith(PREFIX):
        return value
    key_id, _, body = value[len(PREFIX) :].partition(":")
    if key is None or key.key_id != key_id:
        return ERASED
    try:
        raw = base64.urlsafe_b64decode(body)
        plain = AESGCM(key.secret).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(key.subject))
    except (InvalidTag, ValueError) as error:
        raise PersonalDataError(f"a sealed field of subject {key.subject} does not open") from error
    return plain.decode()


def blind_index(secret: bytes, kind: str, normalised: str | None) -> str | None:
    """A keyed hash of a normalised contact (`kind`: "email", "phone"), to find a subject by
    it: equal contacts give equal indexes, and without the secret nothing can be guessed."""
    if not normalised:
        return None
    digest = hmac.new(secret, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()
    return f"{kind}:{digest}"


# -- keys in the service's database ---------------------------------------------------------

# One statement: claim the subject's blind indexes (if any) and return its existing key or
# the new one. A key inserted by another transaction that commits meanwhile is in neither
# branch (the SELECT reads the statement's snapshot), and an index it claimed is not claimed
# here: the caller gets ConcurrencyConflict and its unit of work is run again.
_GET_OR_CREATE = Sql(
    "WITH claimed AS (INSERT INTO subject_indexes (blind_index, subject_id)"
    " SELECT unnest(CAST(:indexes AS text[])), :subject ON CONFLICT (blind_index) DO NOTHING"
    " RETURNING 1),"
    " created AS (INSERT INTO customer_keys (subject_id, key_id, wrapped_key)"
    " VALUES (:subject, :key_id, :wrapped) ON CONFLICT (subject_id) DO NOTHING"
    " RETURNING key_id, wrapped_key, true AS created)"
    " SELECT key_id, wrapped_key, created, (SELECT count(*) FROM claimed) AS claimed FROM created"
    " UNION ALL SELECT key_id, wrapped_key, false, (SELECT count(*) FROM claimed)"
    " FROM customer_keys WHERE subject_id = :subject"
)
_READ = Sql(
    "SELECT subject_id, key_id, wrapped_key FROM customer_keys"
    " WHERE subject_id = ANY(CAST(:subjects AS text[]))"
)
_DESTROY = Sql(
    "WITH indexes AS (DELETE FROM subject_indexes WHERE subject_id = :subject)"
    " DELETE FROM customer_keys WHERE subject_id = :subject"
)
_GET_OR_CREATE_SECRET = Sql(
    "WITH created AS (INSERT INTO personal_data_secrets (name, wrapped_secret) VALUES (:name, :wrapped)"
    " ON CONFLICT (name) DO NOTHING RETURNING wrapped_secret, true AS created)"
    " SELECT wrapped_secret, created FROM created UNION ALL"
    " SELECT wrapped_secret, false FROM personal_data_secrets WHERE name = :name"
)


class SubjectKeys:
    """The data keys of one service's subjects, with a short per-process cache.

    `ttl` bounds how long a replica may go on opening a subject's fields after another
    replica destroyed its key (and how long a replica that cached "no key" takes to see a
    key created elsewhere, which only matters for reads: writing always asks the database).
    """

    def __init__(
        self,
        wrapper: KeyWrapper | None = None,
        ttl: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.wrapper: KeyWrapper = wrapper or StoredInDatabase()
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[SubjectKey | None, float]] = {}
        self._secrets: dict[str, bytes] = {}

    def _cached(self, subject: str) -> tuple[SubjectKey | None, bool]:
        entry = self._cache.get(subject)
        if entry is None or entry[1] <= self._clock():
            return None, False
        return entry[0], True

    def remember(self, subject: str, key: SubjectKey | None) -> None:
        if len(self._cache) > 100_000:  # a bound, not a policy: expired entries go first
            now = self._clock()
            self._cache = {s: e for s, e in self._cache.items() if e[1] > now}
        self._cache[subject] = (key, self._clock() + self.ttl)

    def forget(self, subject: str) -> None:
        self._cache.pop(subject, None)

    async def for_writing(
        self,
        db: asyncpg.Connection,
        subject: str,
        on_commit: Callable[[Callable[[], None]], None],
        indexes: Sequence[str] = (),
    ) -> SubjectKey:
        """The subject's key, created in the caller's transaction if it has none (one
        statement, none when the key is cached and there are no `indexes` to claim).

        `indexes`: blind indexes that find this subject from now on (a new guest's email
        and phone), deleted with the key. A key created here enters the cache through
        `on_commit` (UnitOfWork.after_commit), so a rolled-back key is never used.
        """
        key, known = self._cached(subject)
        if known and key is not None and not indexes:
            return key
        fresh = new_key(subject)
        params = {
            "subject": subject,
            "indexes": list(indexes),
            "key_id": fresh.key_id,
            "wrapped": await self.wrapper.wrap(subject, fresh.secret),
        }
        rows = await _GET_OR_CREATE.fetch(db, params)
        if not rows or rows[0]["claimed"] != len(indexes):
            raise ConcurrencyConflict(f"the key or an index of {subject} was created concurrently")
        row = rows[0]
        if row["created"]:
            on_commit(lambda: self.remember(subject, fresh))
            return fresh
        key = SubjectKey(subject, row["key_id"], await self.wrapper.unwrap(subject, row["wrapped_key"]))
        self.remember(subject, key)
        return key

    async def for_reading(
        self, db: asyncpg.Connection, subjects: Iterable[str]
    ) -> dict[str, SubjectKey | None]:
        """The keys of these subjects (None: erased, or never had one), one query for those
        not cached."""
        found: dict[str, SubjectKey | None] = {}
        missing = []
        for subject in dict.fromkeys(subjects):
            key, known = self._cached(subject)
            if known:
                found[subject] = key
            else:
                missing.append(subject)
        if missing:
            rows = {r["subject_id"]: r for r in await _READ.fetch(db, {"subjects": missing})}
            for subject in missing:
                row = rows.get(subject)
                key = None
                if row is not None:
                    secret = await self.wrapper.unwrap(subject, row["wrapped_key"])
                    key = SubjectKey(subject, row["key_id"], secret)
                self.remember(subject, key)
                found[subject] = key
        return found

    async def destroy(self, db: asyncpg.Connection, subject: str) -> bool:
        """Delete the subject's key and blind indexes (in the caller's transaction): every
        field sealed with the key reads as ERASED from then on. True if there was a key."""
        status = await _DESTROY.execute(db, {"subject": subject})
        self.forget(subject)
        return status.split()[-1] != "0"

    async def service_secret(self, db: asyncpg.Connection, name: str) -> bytes:
        """A random secret of the service (the blind index key), created once. It never
        changes (every index would have to be rebuilt), so it is cached for the life of the
        process, once it is known to be committed: one this call created is not cached, in
        case the caller's transaction rolls back."""
        known = self._secrets.get(name)
        if known is not None:
            return known
        wrapped = await self.wrapper.wrap(f"secret:{name}", os.urandom(32))
        rows = await _GET_OR_CREATE_SECRET.fetch(db, {"name": name, "wrapped": wrapped})
        if not rows:
            raise ConcurrencyConflict(f"the secret {name} was created concurrently")
        secret = await self.wrapper.unwrap(f"secret:{name}", rows[0]["wrapped_secret"])
        if not rows[0]["created"]:
            self._secrets[name] = secret
        return secret
