"""Handshake patterns as data (Noise rev 34 §7, §9 psk modifiers, §18 deferred patterns).

Rules of this file:

* Every pattern is transcribed in the spec's own notation in :data:`_PATTERN_TEXT`
  and parsed once at import; nothing else in the plugin hard-codes a pattern.
* A modifier (``pskN`` §9.2, ``hfs`` - see the README) rewrites a parsed pattern
  into a new :class:`HandshakePattern`; unknown modifiers are configuration errors.
* Messages alternate initiator, responder, initiator... (§7.1), except in
  one-way patterns (§7.4) where there is one initiator message.
"""

from __future__ import annotations

import enum
import re

import attrs

from sealwire_noise._errors import NoiseConfigurationError

__all__ = [
    "HandshakePattern",
    "Token",
    "parse_pattern",
    "supported_patterns",
]


class Token(enum.Enum):
    """A message-pattern token (§5.3, §9.1 ``psk``; ``e1``/``ekem1`` for the hybrid)."""

    E = "e"
    S = "s"
    EE = "ee"
    ES = "es"
    SE = "se"
    SS = "ss"
    PSK = "psk"
    E1 = "e1"  # initiator's ML-KEM-768 encapsulation key (hfs, README "Post-quantum")
    EKEM1 = "ekem1"  # responder's ML-KEM ciphertext, then MixKey(shared secret)


@attrs.frozen(kw_only=True)
class HandshakePattern:
    """A parsed pattern: pre-messages (§7.1) and the message token lists.

    ``initiator_pre`` / ``responder_pre`` hold the pre-message tokens (``e``/``s``)
    known before the handshake; ``messages[i]`` is sent by the initiator when
    ``i`` is even (or always, in a one-way pattern).
    """

    name: str
    initiator_pre: tuple[Token, ...]
    responder_pre: tuple[Token, ...]
    messages: tuple[tuple[Token, ...], ...]
    one_way: bool

    @property
    def has_psk(self) -> bool:
        return any(Token.PSK in m for m in self.messages)

    @property
    def psk_count(self) -> int:
        return sum(m.count(Token.PSK) for m in self.messages)

    @property
    def is_hybrid(self) -> bool:
        return any(Token.E1 in m for m in self.messages)

    def sender_is_initiator(self, index: int) -> bool:
        """Whether message ``index`` is written by the initiator (§7.1)."""
        return self.one_way or index % 2 == 0

    def needs_local_static(self, initiator: bool) -> bool:
        """Whether the party sends or pre-shares its static key ``s``."""
        pre = self.initiator_pre if initiator else self.responder_pre
        sent = any(
            Token.S in m
            for i, m in enumerate(self.messages)
            if self.sender_is_initiator(i) == initiator
        )
        return Token.S in pre or sent

    def needs_remote_static(self, initiator: bool) -> bool:
        """Whether the peer's static key must be known before the handshake."""
        return Token.S in (self.responder_pre if initiator else self.initiator_pre)


# Noise rev 34: one-way §7.4, interactive fundamental §7.5, deferred §18.
# "<pre> ... <msg> | <msg>" with "->" initiator and "<-" responder tokens.
_PATTERN_TEXT = """
N    = <- s ... -> e, es
K    = -> s ; <- s ... -> e, es, ss
X    = <- s ... -> e, es, s, ss
NN   = -> e | <- e, ee
NK   = <- s ... -> e, es | <- e, ee
NX   = -> e | <- e, ee, s, es
KN   = -> s ... -> e | <- e, ee, se
KK   = -> s ; <- s ... -> e, es, ss | <- e, ee, se
KX   = -> s ... -> e | <- e, ee, se, s, es
XN   = -> e | <- e, ee | -> s, se
XK   = <- s ... -> e, es | <- e, ee | -> s, se
XX   = -> e | <- e, ee, s, es | -> s, se
IN   = -> e, s | <- e, ee, se
IK   = <- s ... -> e, es, s, ss | <- e, ee, se
IX   = -> e, s | <- e, ee, se, s, es
NK1  = <- s ... -> e | <- e, ee, es
NX1  = -> e | <- e, ee, s | -> es
X1N  = -> e | <- e, ee | -> s | <- se
X1K  = <- s ... -> e, es | <- e, ee | -> s | <- se
XK1  = <- s ... -> e | <- e, ee, es | -> s, se
X1K1 = <- s ... -> e | <- e, ee, es | -> s | <- se
X1X  = -> e | <- e, ee, s, es | -> s | <- se
XX1  = -> e | <- e, ee, s | -> es, s, se
X1X1 = -> e | <- e, ee, s | -> es, s | <- se
K1N  = -> s ... -> e | <- e, ee | -> se
K1K  = -> s ; <- s ... -> e, es | <- e, ee | -> se
KK1  = -> s ; <- s ... -> e | <- e, ee, se, es
K1K1 = -> s ; <- s ... -> e | <- e, ee, es | -> se
K1X  = -> s ... -> e | <- e, ee, s, es | -> se
KX1  = -> s ... -> e | <- e, ee, se, s | -> es
K1X1 = -> s ... -> e | <- e, ee, s | -> se, es
I1N  = -> e, s | <- e, ee | -> se
I1K  = <- s ... -> e, es, s | <- e, ee | -> se
IK1  = <- s ... -> e, s | <- e, ee, se, es
I1K1 = <- s ... -> e, s | <- e, ee, es | -> se
I1X  = -> e, s | <- e, ee, s, es | -> se
IX1  = -> e, s | <- e, ee, se, s | -> es
I1X1 = -> e, s | <- e, ee, s | -> se, es
"""

_ONE_WAY = frozenset({"N", "K", "X"})


def _tokens(text: str) -> tuple[Token, ...]:
    return tuple(Token(t.strip()) for t in text.split(","))


def _parse_line(name: str, body: str) -> HandshakePattern:
    pre_text, _, msg_text = body.rpartition("...")
    init_pre: tuple[Token, ...] = ()
    resp_pre: tuple[Token, ...] = ()
    for part in filter(None, (p.strip() for p in pre_text.split(";"))):
        if part.startswith("->"):
            init_pre = _tokens(part[2:])
        else:
            resp_pre = _tokens(part[2:])
    messages = tuple(_tokens(m.strip()[2:]) for m in msg_text.split("|"))
    return HandshakePattern(
        name=name,
        initiator_pre=init_pre,
        responder_pre=resp_pre,
        messages=messages,
        one_way=name in _ONE_WAY,
    )


def _load() -> dict[str, HandshakePattern]:
    table = {}
    for line in _PATTERN_TEXT.strip().splitlines():
        name, _, body = line.partition("=")
        table[name.strip()] = _parse_line(name.strip(), body)
    return table


_PATTERNS = _load()
_BASE_RE = re.compile(r"^([NKXI]1?[NKXI]?1?)(.*)$")
_PSK_RE = re.compile(r"^psk([0-9])$")


def supported_patterns() -> frozenset[str]:
    """Names of the base patterns in the table (fundamental and deferred)."""
    return frozenset(_PATTERNS)


def _apply_psk(pattern: HandshakePattern, n: int) -> HandshakePattern:
    """§9.2: ``psk0`` starts the first message, ``pskN`` ends message N (1-based)."""
    if n > len(pattern.messages):
        raise NoiseConfigurationError(f"psk{n} is beyond the pattern's messages")
    messages = list(pattern.messages)
    if n == 0:
        messages[0] = (Token.PSK, *messages[0])
    else:
        messages[n - 1] = (*messages[n - 1], Token.PSK)
    return attrs.evolve(pattern, messages=tuple(messages))


def _apply_hfs(pattern: HandshakePattern) -> HandshakePattern:
    """Hybrid forward secrecy with a KEM: ``e`` -> ``e, e1`` in the initiator's
    first message and ``ee`` -> ``ee, ekem1`` in the responder's (README)."""
    if pattern.one_way or Token.E not in pattern.messages[0]:
        raise NoiseConfigurationError("hfs needs an interactive pattern starting with e")
    first = pattern.messages[0]
    at = first.index(Token.E) + 1
    messages = [(*first[:at], Token.E1, *first[at:])]
    for msg in pattern.messages[1:]:
        if Token.EE in msg and Token.EKEM1 not in (t for m in messages for t in m):
            at = msg.index(Token.EE) + 1
            msg = (*msg[:at], Token.EKEM1, *msg[at:])
        messages.append(msg)
    return attrs.evolve(pattern, messages=tuple(messages))


def parse_pattern(name: str) -> HandshakePattern:
    """Parse ``XX``, ``NNpsk0+psk2``, ``XXhfs``... into a :class:`HandshakePattern`."""
    match = _BASE_RE.match(name)
    if match is None or match.group(1) not in _PATTERNS:
        raise NoiseConfigurationError(f"unsupported handshake pattern {name[:40]!r}")
    pattern = _PATTERNS[match.group(1)]
    modifiers = match.group(2)
    if modifiers:
        for modifier in modifiers.split("+"):
            psk = _PSK_RE.match(modifier)
            if psk is not None:
                pattern = _apply_psk(pattern, int(psk.group(1)))
            elif modifier == "hfs":
                pattern = _apply_hfs(pattern)
            else:
                raise NoiseConfigurationError(f"unsupported pattern modifier {modifier[:20]!r}")
    return attrs.evolve(pattern, name=name)
