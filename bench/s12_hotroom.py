"""s12_hotroom.py - scenario 12 of the benchmark (issue 16): a hot room under real gifts, the senders' acks
and the members' delivery latency, beside Nchan at the same event rates, and the gift path's CPU per gift at
scenario 1's maximum.

The room: BENCH_FANOUT_SUBS members over two receive-only tipcast-bench processes (`--senders 0`), plus a
third process whose S12_SENDERS viewers send gift 1 into the same room at the step's rate, open-loop, started
once the members are connected; the receivers' measured window holds the sender's. The
receivers time each delivery from the gift's scheduled send time (its combo id carries it), so the latency
is the whole path: debit, outbox, the rooms consumer, the room's script, pub/sub, the flush. The sender's
ack latency is what a viewer who taps a gift in that room waits.

Nchan gets the same layout: two receiving processes and a third with one publisher, 100-byte frames.

Steps take turns (tipcast, Nchan, tipcast, Nchan) at each of S12_RATES; Nchan only at the rates of
S12_PEER_RATES (at 100 events/s it does not keep up here; scenario 2). Every figure is per pass; the report
shows both passes.

Then a storm of joins and leaves: the room's members all join at once (two processes opening 5,000
connections a second each) and all leave at once (their processes end), while S12_SENDERS viewers in a room
of their own send S12_STORM_RATE gifts/s: their ack latency second by second, the snapshot reads per join
(the node's metrics), and the CPU per joining connection of tipcastd and Redis (from /proc).

Then the gift path: scenario 1's senders and rooms at scenario 1's maximum (BENCH_S4_RATE when set; 1,000 when
scenario 1 did not run),
with the CPU per acked gift of tipcastd, Redis and PostgreSQL from /proc.
"""

import re
import time
import urllib.request

import s2_fanout
import s8_features
from report import num
from suite import SECRET, g6, jtext, tipcast_proc

RECEIVERS = 2
RECEIVER_EXTRA_S = 4
STORM_RATE = 100      # the senders' gifts/s during the storm, into a room of their own
STORM_BEFORE_S = 4    # the senders' measured seconds before the members come
STORM_HOLD_S = 6      # the members' stay, once connected, before their processes end
STORM_AFTER_S = 6     # the senders' measured seconds after the members have gone


def established(suite, port):
    """Established TCP connections to the server's port (ss)."""
    p = suite.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], 30, quiet=True)
    return len(p.stdout.splitlines()) if p.returncode == 0 else 0


def hot_room(suite, name, target, port, spid, rate, room):
    """One step: RECEIVERS receive-only processes and one sending process; figures s12.<name>.*, runs
    OUT/s12-<name>-*."""
    s = suite.s
    fig, name = name, "s12-" + name.replace(".", "-")
    per = s.s2_subs // RECEIVERS
    bound = s.s12_warm + s.s12_dur + 90
    for i in range(RECEIVERS):
        lo = 2 + 8 * i
        extra = ["--secret", SECRET, "--user-base", (i + 1) * 100000] if target == "tipcast" else []
        # Their window outlasts the sender's by RECEIVER_EXTRA_S: it holds
        # every event the sender measures.
        suite.bench_bg(f"{name}-r{i}", bound, "--target", target, "--port", port, *extra,
                       "--connections", per, "--senders", 0, "--rooms", 1, "--room-base", room,
                       "--open-rate", 5000, "--warmup", s.s12_warm, "--duration", s.s12_dur + RECEIVER_EXTRA_S,
                       "--source-addrs", f"{lo}-{lo + 7}", *(["--server-pid", spid] if i == 0 else []))
    # The sender starts once the members are connected (a server may take
    # a few seconds to accept 10,000).
    if tipcast_proc.wait_for(lambda: established(suite, port) >= s.s2_subs, 60) != "ok":
        suite.warn(f"{name}: the receivers did not all connect within 60 s")
    time.sleep(1)  # their joins
    senders = s.s12_senders if target == "tipcast" else 1
    extra = ["--secret", SECRET, "--user-base", 900000] if target == "tipcast" else []
    suite.bench_bg(f"{name}-s", bound, "--target", target, "--port", port, *extra,
                   "--connections", senders, "--senders", senders, "--rooms", 1, "--room-base", room,
                   "--rate", g6(rate), "--frame-bytes", 100, "--warmup", s.s12_warm,
                   "--duration", s.s12_dur, "--source-addrs", "20-20")
    suite.wait_bg()
    d, p50, p99, errors = 0.0, 0.0, 0.0, 0
    for i in range(RECEIVERS):
        f = f"{name}-r{i}"
        d += num(suite.jget(f, "rates", "deliveries_per_s")) or 0.0
        n = num(suite.jget(f, "delivery_latency_ms", "count"))
        got50, got99 = num(suite.jget(f, "delivery_latency_ms", "p50")), num(suite.jget(f, "delivery_latency_ms", "p99"))
        if not n or got50 is None or got99 is None:
            p50 = p99 = None  # a receiver measured nothing: no latency figure
        elif p50 is not None:
            p50, p99 = max(p50, got50), max(p99, got99)
        errs = suite.jget(f, "totals", "errors") or {}
        errors += int(sum(errs.values())) if isinstance(errs, dict) else 0
    cpu_s = num(suite.jget(f"{name}-r0", "server", "cpu_s"))
    dur = num(suite.jget(f"{name}-r0", "rates", "measured_s")) or s.s12_dur
    cpu = g6(cpu_s / dur * 1e6 / d) if cpu_s is not None and d > 0 else ""
    sender = f"{name}-s"
    errors += int(num(suite.jget(sender, "totals", "errors_total")) or 0)
    figs = {"rate": g6(rate), "deliveries_per_s": g6(d), "p50_ms": "" if p50 is None else g6(p50), "p99_ms": "" if p99 is None else g6(p99),
            "cpu_us_per_delivery": cpu, "errors": errors,
            "ack_p50_ms": jtext(suite.jget(sender, "ack_latency_ms", "p50")) if target == "tipcast" else "",
            "ack_p99_ms": jtext(suite.jget(sender, "ack_latency_ms", "p99")) if target == "tipcast" else ""}
    for k, v in figs.items():
        suite.fig(f"s12.{fig}.{k}", v)
    suite.log(f"  {target} at {rate} events/s: delivery p50 {figs['p50_ms']} / p99 {figs['p99_ms']} ms, "
              f"{figs['deliveries_per_s']} deliveries/s, {cpu or '?'} us CPU per delivery, ack p50 "
              f"{figs['ack_p50_ms'] or '-'} / p99 {figs['ack_p99_ms'] or '-'} ms, {errors} errors")


def metric(port, name):
    """A counter of the node's /metrics page, or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def storm(suite, room, k):
    """Pass k: the members of the hot room join at once and leave at once while other viewers send gifts in a
    room of their own: figures s12.storm.<k>.*, runs OUT/s12-storm-<k>-*."""
    s = suite.s
    port, spid = s.tc_port, suite.servers[0].pid
    rpid = s8_features.redis_pid(suite)
    per = s.s2_subs // RECEIVERS
    open_s = per / 5000
    span = STORM_BEFORE_S + open_s + 2 + STORM_HOLD_S + STORM_AFTER_S
    suite.log(f"scenario 12: a storm of {s.s2_subs} joins and leaves while {s.s12_senders} viewers send "
              f"{STORM_RATE} gifts/s in another room")
    sender = f"s12-storm-{k}-s"
    suite.bench_bg(sender, span + 60, "--target", "tipcast", "--port", port, "--secret", SECRET,
                   "--user-base", 900000, "--connections", s.s12_senders, "--senders", s.s12_senders,
                   "--rooms", 1, "--room-base", room - 1, "--rate", STORM_RATE, "--warmup", 1,
                   "--duration", g6(span), "--source-addrs", "20-20")
    time.sleep(2 + STORM_BEFORE_S)  # the sender's connections, credits and warm-up, then its calm seconds
    cpu0 = (tipcast_proc.cpu_s(spid), tipcast_proc.cpu_s(rpid) if rpid else None)
    m0 = (metric(port, "tipcast_room_snapshot_joins_total"), metric(port, "tipcast_room_snapshot_reads_total"))
    joins_at = time.time()
    for i in range(RECEIVERS):
        lo = 2 + 8 * i
        # Connected, joined, held; then the process ends and the kernel
        # closes its 5,000 connections at once.
        suite.bench_bg(f"s12-storm-{k}-r{i}", span + 60, "--target", "tipcast", "--port", port, "--secret", SECRET,
                       "--user-base", (i + 1) * 100000, "--connections", per, "--senders", 0, "--rooms", 1,
                       "--room-base", room, "--open-rate", 5000, "--warmup", g6(open_s + 2),
                       "--duration", STORM_HOLD_S, "--source-addrs", f"{lo}-{lo + 7}")
    members = suite.jobs[-RECEIVERS:]
    if tipcast_proc.wait_for(lambda: established(suite, port) >= s.s2_subs + s.s12_senders, 60) != "ok":
        suite.warn("scenario 12 storm: the members did not all connect within 60 s")
    # Their joins: answered once every snapshot has been sent.
    tipcast_proc.wait_for(lambda: (metric(port, "tipcast_room_snapshot_joins_total") or 0) - (m0[0] or 0)
                          >= s.s2_subs, 30)
    joined_at = time.time()
    cpu1 = (tipcast_proc.cpu_s(spid), tipcast_proc.cpu_s(rpid) if rpid else None)
    m1 = (metric(port, "tipcast_room_snapshot_joins_total"), metric(port, "tipcast_room_snapshot_reads_total"))
    # The leaves: when the members' processes end, the kernel closes their
    # connections (the server reads their ends at once).
    tipcast_proc.wait_for(lambda: all(j.proc.poll() is not None for j in members), span + 30, interval=0.02)
    left_at = time.time()
    suite.wait_bg()

    # The sender's second t covers [start + t - 1, start + t) of the wall clock.
    start = (num(suite.jget(sender, "measure_start_ms")) or 0.0) / 1000

    def second(t):
        return int(t - start) + 1

    secs = suite.jget(sender, "per_second") or []

    def worst(a, b):
        vals = [num(x.get("ack_p99_ms")) for x in secs if a <= x.get("t", 0) <= b]
        vals = [v for v in vals if v is not None]
        return g6(max(vals)) if vals else ""

    joins = (m1[0] - m0[0]) if None not in (m0[0], m1[0]) else None
    reads = (m1[1] - m0[1]) if None not in (m0[1], m1[1]) else None
    figs = {"members": s.s2_subs, "rate": STORM_RATE,
            "before_p99_ms": worst(1, second(joins_at) - 1),
            "joins_p99_ms": worst(second(joins_at), second(joined_at) + 1),
            "leaves_p99_ms": worst(second(left_at) - 1, second(left_at) + 1),
            "ack_p99_ms": jtext(suite.jget(sender, "ack_latency_ms", "p99")),
            "ack_max_ms": jtext(suite.jget(sender, "ack_latency_ms", "max")),
            "errors": int(num(suite.jget(sender, "totals", "errors_total")) or 0),
            "joins": g6(joins) if joins is not None else "",
            "reads": g6(reads) if reads is not None else "",
            "join_s": g6(joined_at - joins_at),
            "joins_second": second(joins_at), "leaves_second": second(left_at),
            "tipcastd_us_per_join": g6((cpu1[0] - cpu0[0]) * 1e6 / joins) if joins and None not in (cpu0[0], cpu1[0])
            else "",
            "redis_us_per_join": g6((cpu1[1] - cpu0[1]) * 1e6 / joins) if joins and None not in (cpu0[1], cpu1[1])
            else ""}
    for key, v in figs.items():
        suite.fig(f"s12.storm.{k}.{key}", v)
    suite.log(f"  ack p99 before {figs['before_p99_ms']} ms, during the joins {figs['joins_p99_ms']} ms, during "
              f"the leaves {figs['leaves_p99_ms']} ms; {figs['joins']} joins, {figs['reads']} snapshot reads, "
              f"{figs['tipcastd_us_per_join']} / {figs['redis_us_per_join']} us per join (tipcastd / Redis)")


def gift_path(suite):
    """Scenario 1's load at its maximum rate: CPU per acked gift of each process (s12.gifts.*)."""
    s = suite.s
    rate = num(s.s4_rate or suite.s1_max) or 1000
    suite.log(f"scenario 12: the gift path at {g6(rate)} gifts/s (scenario 1's maximum)")
    figs = s8_features.gift_run(suite, "s12-gifts", rate, 0, s.s12_dur)
    suite.fig("s12.gifts.rate", g6(rate))
    for k, v in figs.items():
        suite.fig(f"s12.gifts.{k}", v)


def run(suite):
    s = suite.s
    room = s.rooms - 1  # a room of its own (scenario 1 sends to the first ones)
    suite.log(f"scenario 12: hot room bench-room-{room}, {s.s2_subs} members, gifts from {s.s12_senders} "
              f"viewers at {' '.join(s.s12_rates)} events/s; Nchan at {' '.join(s.s12_peer_rates)}")
    suite.fig("s12.subs", s.s2_subs)
    suite.fig("s12.senders", s.s12_senders)
    suite.fig("s12.rates", " ".join(s.s12_rates))
    suite.fig("s12.peer_rates", " ".join(s.s12_peer_rates))
    nchan = s2_fanout.Nchan(suite)
    suite.peers.append(nchan)
    npid = nchan.server_pid() if nchan.start() else ""
    if not npid:
        suite.warn("Nchan did not start: no Nchan reference in scenario 12")
    for rate in s.s12_rates:
        for k in range(s.s12_passes):
            hot_room(suite, f"tipcast.{rate}.{k}", "tipcast", s.tc_port, suite.servers[0].pid, float(rate), room)
            if npid and rate in s.s12_peer_rates:
                hot_room(suite, f"nchan.{rate}.{k}", "nchan", nchan.port, npid, float(rate), 0)
    nchan.stop()
    for k in range(s.s12_passes):
        storm(suite, room, k)
    gift_path(suite)
