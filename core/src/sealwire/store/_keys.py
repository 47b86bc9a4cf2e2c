"""The store's at-rest key and where it comes from.

A :class:`StoreKey` is 32 random bytes used with AES-256-GCM. It is looked up,
in order, in an environment variable, a key file, then the providers plugins
contribute (a secrets manager, a KMS). Text forms are base64 or hex.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealwire.errors import ConfigurationError, SealwireError

__all__ = [
    "DEFAULT_KEY_ENV",
    "STORE_KEY_SIZE",
    "StoreKey",
    "require_private_file",
    "resolve_store_key",
]


STORE_KEY_SIZE = 32
"""AES-256 key length in bytes."""

DEFAULT_KEY_ENV = "SEALWIRE_STORE_KEY"

_MAX_KEY_FILE = 4096
"""A key file is a few dozen bytes; never read more than this from it."""


LOOSE_MODE_BITS = stat.S_IRWXG | stat.S_IRWXO
"""Any permission for group or others on a key file: refused (a key readable by
another account is a key shared with it)."""


def _loose_mode_error(path: Path, mode: int, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"{what} {path} is accessible to group or others (mode {stat.S_IMODE(mode):04o}): "
        f"run 'chmod 600 {path}'"
    )


def require_private_file(path: Path, what: str = "key file") -> None:
    """:class:`ConfigurationError` with the ``chmod 600 PATH`` to run when ``path`` may be
    read or written by group or others; nothing when it is private or absent (reading
    it then fails with its own error)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & LOOSE_MODE_BITS:
        raise _loose_mode_error(path, mode, what)


def _parse_text(text: str) -> bytes:
    """32 bytes from hex (64 digits) or base64 (standard or URL-safe, padded or not)."""
    text = text.strip()
    if len(text) == 2 * STORE_KEY_SIZE:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("store key is neither hex nor base64") from None
    return raw


@attrs.frozen(eq=False, repr=False)
class StoreKey:
    """A 32-byte at-rest key. Its bytes leave only through :meth:`export_for_file`."""

    _key: bytes = attrs.field(alias="key", repr=False)
    _aead: AESGCM = attrs.field(init=False, repr=False)

    @_aead.default
    def _make_aead(self) -> AESGCM:  # keep the key object, not the bytes, on the hot path
        return AESGCM(self._key)

    @classmethod
    def generate(cls) -> StoreKey:
        """A new random key from the operating system's CSPRNG."""
        return cls(key=os.urandom(STORE_KEY_SIZE))

    @classmethod
    def from_bytes(cls, data: bytes) -> StoreKey:
        """A key from its 32 raw bytes; :class:`ConfigurationError` for another length."""
        if not isinstance(data, bytes | bytearray) or len(data) != STORE_KEY_SIZE:
            raise ConfigurationError(f"store key must be {STORE_KEY_SIZE} bytes")
        return cls(key=bytes(data))

    @classmethod
    def from_text(cls, text: str) -> StoreKey:
        """A key from base64 or hex text."""
        return cls.from_bytes(_parse_text(text))

    @classmethod
    def from_env(cls, var: str = DEFAULT_KEY_ENV) -> StoreKey:
        """A key from an environment variable (base64 or hex); ConfigurationError if unset."""
        text = os.environ.get(var)
        if not text:
            raise ConfigurationError(f"environment variable {var} is not set")
        try:
            return cls.from_text(text)
        except ConfigurationError:
            raise ConfigurationError(f"{var} does not hold a valid store key") from None

    @classmethod
    def from_file(cls, path: Path | str) -> StoreKey:
        """A key from a file written with :meth:`export_for_file` (or raw 32 bytes).

        :raises ConfigurationError: when group or others may read or write the file
            (with the ``chmod 600 PATH`` to run), or it holds no valid key.
        """
        path = Path(path)
        try:
            with path.open("rb") as f:
                mode = os.fstat(f.fileno()).st_mode
                data = f.read(_MAX_KEY_FILE + 1)
        except OSError as exc:
            raise ConfigurationError(f"cannot read store key file {path}: {exc.strerror}") from None
        if mode & LOOSE_MODE_BITS:
            raise _loose_mode_error(path, mode, "store key file")
        if len(data) == STORE_KEY_SIZE:
            return cls.from_bytes(data)
        try:
            if len(data) > _MAX_KEY_FILE:
                raise ConfigurationError("too long")
            return cls.from_text(data.decode("ascii"))
        except (ConfigurationError, UnicodeDecodeError):
            raise ConfigurationError(f"{path} does not hold a valid store key") from None

    def export_for_file(self) -> bytes:
        """The key as base64 text and a newline, to write to a 0600 file. Handle with care."""
        return base64.b64encode(self._key) + b"\n"

    @property
    def aead(self) -> AESGCM:
        """The AES-256-GCM object for this key."""
        return self._aead

    def __repr__(self) -> str:
        return "StoreKey(<redacted>)"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("StoreKey cannot be pickled")


def resolve_store_key(
    *,
    env_var: str = DEFAULT_KEY_ENV,
    key_file: Path | None = None,
    providers: Sequence[Callable[[], StoreKey | None]] = (),
) -> StoreKey:
    """Find the store key: ``$env_var``, then ``key_file``, then each provider in turn.

    :raises ConfigurationError: no source holds a key, or a source holds an invalid one.
    """
    if os.environ.get(env_var):
        return StoreKey.from_env(env_var)
    if key_file is not None:
        return StoreKey.from_file(key_file)
    for provider in providers:
        try:
            key = provider()
        except SealwireError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"store key provider failed: {type(exc).__name__}") from None
        if key is not None:
            if not isinstance(key, StoreKey):
                raise ConfigurationError("a store key provider returned a non-StoreKey")
            return key
    raise ConfigurationError(
        f"no store key: set {env_var}, create a key file, or install a key provider"
    )
