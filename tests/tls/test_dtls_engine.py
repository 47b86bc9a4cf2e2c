"""The sans-I/O DTLS engine: cookies, records, epochs, anti-replay, fragments, versions."""

from __future__ import annotations

import datetime
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sealwire.identity import Identity
from sealwire_tls._dtls import (
    DTLS_1_2,
    DTLS_1_3,
    MAX_FRAGMENTS,
    MAX_PENDING_MESSAGES,
    MAX_RECORD,
    REPLAY_WINDOW,
    CookieJar,
    DtlsAuthenticationError,
    DtlsConfigurationError,
    DtlsDecodeError,
    DtlsEngine,
    DtlsEpochError,
    DtlsFragmentError,
    DtlsReplayError,
    DtlsStateError,
    Fragment,
    Fragmenter,
    Reassembler,
    Record,
    ReplayWindow,
    dtls_context,
    dtls_version,
    split_records,
)
from sealwire_tls._dtls_certs import (
    DtlsCertificateError,
    check_dtls_certificate,
    dtls_certificate,
)

NOW = datetime.datetime.now(datetime.UTC)


def contexts(clock: float = 1000.0) -> tuple[object, object, CookieJar]:
    jar = CookieJar(lambda: clock)
    made = []
    for server in (True, False):
        identity = Identity.generate()
        key = ec.generate_private_key(ec.SECP256R1())
        made.append(
            dtls_context(
                server=server,
                versions=(DTLS_1_2,),
                certificate=dtls_certificate(identity, key, NOW),
                key=key,
                cookies=jar if server else None,
            )
        )
    return made[0], made[1], jar


def feed(engine: DtlsEngine, datagrams: list[bytes]) -> list[bytes]:
    out = []
    for datagram in datagrams:
        for record in split_records(datagram):
            data = engine.receive_record(record)
            if data is not None:
                out.append(data)
    return out


def handshake(address: bytes = b"udp://127.0.0.1:4000") -> tuple[DtlsEngine, DtlsEngine]:
    server_ctx, client_ctx, _ = contexts()
    client = DtlsEngine.client(client_ctx)  # type: ignore[arg-type]
    hello = client.datagrams()
    engine, hvr = DtlsEngine.accept(server_ctx, hello[0], address)  # type: ignore[arg-type]
    assert engine is None and hvr
    feed(client, hvr)
    server, flight = DtlsEngine.accept(server_ctx, client.datagrams()[0], address)  # type: ignore[arg-type]
    assert server is not None
    for _ in range(10):
        feed(client, flight)
        feed(server, client.datagrams())
        flight = server.datagrams()
        if client.handshake_done and server.handshake_done and not flight:
            break
    assert client.handshake_done and server.handshake_done
    return client, server


def test_cookie_exchange_keeps_no_state_and_binds_the_address() -> None:
    server_ctx, client_ctx, _ = contexts()
    client = DtlsEngine.client(client_ctx)  # type: ignore[arg-type]
    hello = client.datagrams()[0]
    engine, hvr = DtlsEngine.accept(server_ctx, hello, b"udp://10.0.0.1:1")  # type: ignore[arg-type]
    assert engine is None  # no state: only a HelloVerifyRequest, smaller than the hello
    assert len(hvr) == 1 and len(hvr[0]) < len(hello)
    assert split_records(hvr[0])[0].raw[13] == 3  # hello_verify_request
    feed(client, hvr)
    with_cookie = client.datagrams()[0]
    # The same cookie from another address (a spoofer replaying it) gets another HVR.
    engine, again = DtlsEngine.accept(server_ctx, with_cookie, b"udp://10.0.0.2:1")  # type: ignore[arg-type]
    assert engine is None and again
    engine, flight = DtlsEngine.accept(server_ctx, with_cookie, b"udp://10.0.0.1:1")  # type: ignore[arg-type]
    assert engine is not None and flight
    # Anything but a lone ClientHello is refused before any OpenSSL object exists.
    for junk in (b"", b"\x16\xfe\xfd" + b"\x00" * 5, flight[0], b"GET / HTTP/1.1\r\n"):
        with pytest.raises(DtlsDecodeError):
            DtlsEngine.accept(server_ctx, junk, b"a")  # type: ignore[arg-type]


def test_cookie_secret_rotates_and_the_previous_one_still_verifies() -> None:
    now = [0.0]
    jar = CookieJar(lambda: now[0])
    cookie = jar.make(b"addr")
    assert jar.verify(b"addr", cookie) and not jar.verify(b"other", cookie)
    now[0] = 301.0
    assert jar.verify(b"addr", cookie)  # previous secret
    now[0] = 601.0
    assert not jar.verify(b"addr", cookie)  # two rotations: expired


def test_handshake_exports_equal_channel_bindings_and_data_flows() -> None:
    client, server = handshake()
    assert client.version == "DTLSv1.2"
    assert client.export(b"EXPORTER-x", b"ctx") == server.export(b"EXPORTER-x", b"ctx")
    assert client.export(b"EXPORTER-x", b"ctx") != server.export(b"EXPORTER-x", b"other")
    client.send(b"hello")
    assert feed(server, client.datagrams()) == [b"hello"]


def test_replayed_and_reordered_records() -> None:
    client, server = handshake()
    records = []
    for n in range(4):
        client.send(b"m%d" % n)
        records += split_records(client.datagrams()[0])
    assert server.receive_record(records[2]) == b"m2"  # reordered: accepted once each
    assert server.receive_record(records[0]) == b"m0"
    with pytest.raises(DtlsReplayError):
        server.receive_record(records[0])
    assert server.receive_record(records[1]) == b"m1"
    with pytest.raises(DtlsReplayError):
        server.receive_record(records[2])
    assert server.receive_record(records[3]) == b"m3"


def test_tampered_record_fails_authentication_and_changes_nothing() -> None:
    client, server = handshake()
    client.send(b"secret")
    record = split_records(client.datagrams()[0])[0]
    bad = Record(
        content_type=record.content_type,
        version=record.version,
        epoch=record.epoch,
        sequence=record.sequence,
        raw=record.raw[:-1] + bytes([record.raw[-1] ^ 1]),
    )
    with pytest.raises(DtlsAuthenticationError):
        server.receive_record(bad)
    assert server.receive_record(record) == b"secret"  # the window did not move


def _with_epoch(record: Record, epoch: int, content_type: int | None = None) -> Record:
    raw = bytearray(record.raw)
    raw[3:5] = epoch.to_bytes(2, "big")
    if content_type is not None:
        raw[0] = content_type
    return split_records(bytes(raw))[0]


def test_unknown_epoch_and_application_data_in_epoch_0_are_refused() -> None:
    client, server = handshake()
    client.send(b"x")
    record = split_records(client.datagrams()[0])[0]
    with pytest.raises(DtlsEpochError):
        server.receive_record(_with_epoch(record, 2))
    with pytest.raises(DtlsEpochError):
        server.receive_record(_with_epoch(record, 0))
    assert server.receive_record(record) == b"x"


def test_malformed_and_oversized_records_reject_the_datagram() -> None:
    client, _server = handshake()
    client.send(b"x")
    good = client.datagrams()[0]
    header = bytearray(good[:13])
    header[11:13] = (MAX_RECORD + 1).to_bytes(2, "big")
    for bad in (
        good[:10],  # truncated header
        good[:-1],  # truncated body
        bytes(header) + b"\x00" * (MAX_RECORD + 1),  # longer than DTLS allows
        b"\x63" + good[1:],  # unknown content type
        good[:1] + b"\x03\x03" + good[3:],  # a TLS, not DTLS, version
        good + good[:5],  # trailing garbage
    ):
        with pytest.raises(DtlsDecodeError):
            split_records(bad)


def test_replay_window_slides() -> None:
    window = ReplayWindow()
    window.mark(REPLAY_WINDOW + 10)
    with pytest.raises(DtlsReplayError):
        window.check(10)  # left of the window
    window.check(REPLAY_WINDOW + 9)
    window.mark(REPLAY_WINDOW + 9)
    with pytest.raises(DtlsReplayError):
        window.check(REPLAY_WINDOW + 9)


def test_fragments_reassemble_in_any_order_within_bounds() -> None:
    now = [0.0]
    fragmenter, reassembler = Fragmenter(), Reassembler(lambda: now[0])
    message = bytes(range(256)) * 40
    pieces = [Fragment.decode(f) for f in fragmenter.split(0x46, message, 500)]
    assert len(pieces) > 1
    results = [reassembler.add(p) for p in reversed(pieces)]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == (0x46, message)
    # Over the message bound: refused and dropped.
    small = Reassembler(lambda: now[0], max_message=1000)
    with pytest.raises(DtlsFragmentError):
        for fragment in pieces:
            small.add(fragment)
    assert small.pending == 0
    with pytest.raises(DtlsStateError):
        Fragmenter(max_message=10).split(0x46, b"x" * 11, 500)
    # Hostile headers: a count over the bound, an index past the count, disagreement.
    with pytest.raises(DtlsFragmentError):
        Fragment.decode(Fragment(kind=1, message_id=1, index=0, count=2, payload=b"").encode()[:5])
    with pytest.raises(DtlsFragmentError):
        Fragment.decode(
            Fragment(kind=1, message_id=1, index=0, count=MAX_FRAGMENTS + 1, payload=b"").encode()
        )
    with pytest.raises(DtlsFragmentError):
        Fragment.decode(Fragment(kind=1, message_id=1, index=3, count=3, payload=b"").encode())
    reassembler.add(Fragment(kind=1, message_id=9, index=0, count=3, payload=b"a"))
    with pytest.raises(DtlsFragmentError):
        reassembler.add(Fragment(kind=1, message_id=9, index=1, count=4, payload=b"b"))


def test_partial_messages_are_bounded_and_expire() -> None:
    now = [0.0]
    reassembler = Reassembler(lambda: now[0])
    for message_id in range(MAX_PENDING_MESSAGES + 5):
        reassembler.add(Fragment(kind=1, message_id=message_id, index=0, count=2, payload=b"a"))
    assert reassembler.pending == MAX_PENDING_MESSAGES
    now[0] = 1000.0
    reassembler.add(Fragment(kind=1, message_id=999, index=0, count=2, payload=b"a"))
    assert reassembler.pending == 1


def test_dtls_13_is_a_version_switch_refused_with_its_reason() -> None:
    assert dtls_version("1.2") is DTLS_1_2
    with pytest.raises(DtlsConfigurationError, match="RFC 9147"):
        dtls_version("1.3")
    assert not DTLS_1_3.available and DTLS_1_3.blocked_by
    with pytest.raises(DtlsConfigurationError):
        dtls_version("0.9")


def test_certificate_must_be_issued_by_the_cards_key() -> None:
    alice, mallory = Identity.generate(), Identity.generate()
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = dtls_certificate(alice, key, NOW)
    check_dtls_certificate(certificate, alice.public, NOW)
    with pytest.raises(DtlsCertificateError):
        check_dtls_certificate(certificate, mallory.public, NOW)
    with pytest.raises(DtlsCertificateError):
        check_dtls_certificate(certificate, alice.public, NOW + datetime.timedelta(days=30))
    forged = dtls_certificate(mallory, key, NOW)  # Mallory's key signs, naming herself
    with pytest.raises(DtlsCertificateError):
        check_dtls_certificate(forged, alice.public, NOW)


def test_retransmission_timer_follows_rfc6347_4_2_4() -> None:
    _, client_ctx, _ = contexts()
    client = DtlsEngine.client(client_ctx)  # type: ignore[arg-type]
    client.datagrams()
    first = client.timeout()
    assert first is not None and 0 < first <= 1.0  # initial timer: 1 second
    client.handle_timeout()  # not expired yet: nothing resent
    assert client.datagrams() == []
    deadline = time.monotonic() + 5
    while client.timeout() not in (None, 0.0) and time.monotonic() < deadline:
        time.sleep(0.05)
    client.handle_timeout()
    assert client.datagrams()  # the ClientHello again
    second = client.timeout()
    assert second is not None and 1.0 < second <= 2.0  # doubled
