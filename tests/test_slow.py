"""A slow consumer is cut off (close 4009) once its unsent backlog passes
max-queued-bytes, without slowing the room down or growing the server."""

import os

import pytest

from wsclient import OP_BINARY, OP_CLOSE, OP_TEXT, SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK, unique

NOTICES = 2000
BATCH = 50
TEXT_BYTES = 400
RSS_LIMIT_KB = 200 * 1024
SANITIZED = os.environ.get("TIPCAST_TEST_SANITIZED") == "1"


def test_slow_consumer_closed_4009(server, client):
    srv = server(max_queued_bytes=65536, sndbuf_bytes=16384, max_msgs_per_s=100000,
                 max_burst=100000)
    room = unique("r")
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    normal = client(srv, unique("n"), "viewer", SUBPROTOCOL_MSGPACK)
    slow = client(srv, unique("s"), "viewer", SUBPROTOCOL_JSON, rcvbuf=4096)
    assert normal.join(room)["seq"] == 0
    assert slow.join(room)["seq"] == 0
    # From here on the slow viewer reads nothing until the end.

    expected_seq = 1
    for start in range(0, NOTICES, BATCH):
        ids = [f"n{i}" for i in range(start, start + BATCH)]
        creator.send_many({"type": "notice", "id": rid, "room": room,
                           "text": f"{rid}:" + "x" * (TEXT_BYTES - len(rid) - 1)}
                          for rid in ids)
        for rid in ids:
            ack = creator.expect("ack", id=rid, timeout=10)
            assert ack["room"] == room
        # The normal viewer keeps up and sees every event, in order, once.
        for _ in ids:
            ev = normal.expect("event", timeout=10)
            assert ev["seq"] == expected_seq, ev
            assert len(ev["text"]) == TEXT_BYTES
            expected_seq += 1
    assert expected_seq == NOTICES + 1
    normal.assert_silent(0.1)

    if not SANITIZED:
        rss = srv.rss_kb()
        assert rss is not None and rss < RSS_LIMIT_KB, f"VmRSS {rss} kB"

    # The slow viewer: what it got is a gap-free prefix, then close 4009.
    seqs = []
    while True:
        op, payload = slow.recv_frame(timeout=10)
        if op == OP_CLOSE:
            break
        assert op == OP_TEXT, (op, payload[:100])
        msg = slow.decode(op, payload)
        evs = msg["events"] if msg["type"] == "events" else [msg]
        assert all(ev["type"] == "event" for ev in evs), msg
        seqs.extend(ev["seq"] for ev in evs)
    assert slow.close_code == 4009, (slow.close_code, slow.close_reason)
    assert seqs == list(range(1, len(seqs) + 1)), seqs[:20]
    assert len(seqs) < NOTICES, "the slow viewer was never cut off"

    # The room goes on: the normal viewer still gets the next event.
    creator.notice(room, "after the cut")
    assert normal.expect("event")["seq"] == NOTICES + 1
    # And the slow viewer's membership was dropped with its connection.
    late = client(srv, unique("l"), "viewer")
    assert late.join(room)["members"] == 2


def test_many_slow_consumers_bounded_memory(server, client):
    """Twenty stalled readers cost at most their max-queued-bytes each."""
    if SANITIZED:
        pytest.skip("RSS is not meaningful under ASan")
    srv = server(max_queued_bytes=65536, sndbuf_bytes=16384, max_msgs_per_s=100000,
                 max_burst=100000)
    room = unique("r")
    creator = client(srv, room, "creator", SUBPROTOCOL_MSGPACK)
    stalled = [client(srv, unique("s"), "viewer", SUBPROTOCOL_MSGPACK, rcvbuf=4096)
               for _ in range(20)]
    for s in stalled:
        s.join(room)
    rss_before = srv.rss_kb()
    for start in range(0, 1000, BATCH):
        ids = [f"m{i}" for i in range(start, start + BATCH)]
        creator.send_many({"type": "notice", "id": rid, "room": room, "text": "y" * TEXT_BYTES}
                          for rid in ids)
        for rid in ids:
            creator.expect("ack", id=rid, timeout=10)
    rss_after = srv.rss_kb()
    assert rss_after - rss_before < 64 * 1024, (rss_before, rss_after)
    for s in stalled:
        while True:
            op, _ = s.recv_frame(timeout=10)
            if op == OP_CLOSE:
                break
            assert op == OP_BINARY
        assert s.close_code == 4009


def test_pipelined_requests_within_queue_limit(server, client):
    """A client that pipelines many requests (allowed by its rate limit) and
    reads the replies afterwards has a small backlog, far below
    max-queued-bytes: it must get every reply, not a 4009."""
    srv = server(max_msgs_per_s=100000, max_burst=100000)
    c = client(srv, unique("p"), "viewer", SUBPROTOCOL_MSGPACK)
    n = 600  # about 30 kB of pongs, against the default 1 MiB
    c.send_many({"type": "ping", "id": f"p{i}"} for i in range(n))
    for i in range(n):
        r = c.expect(None, id=f"p{i}", timeout=10)
        assert r["type"] == "pong", r
