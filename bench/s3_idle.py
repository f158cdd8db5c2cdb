"""s3_idle.py - scenario 3 of the benchmark: idle authenticated connections held by several tipcastd processes sharing one port (--reuse-port), and the server RSS each costs."""

import re
import time

from suite import SECRET, TC_MAX_CONNS, g6, tipcast_proc


def established(suite, ports):
    """Server-side ESTABLISHED sockets on the tipcastd ports (ss)."""
    flt = " or ".join(f"sport = :{p}" for p in ports)
    return len(suite.run(["ss", "-Htn", "state", "established", f"( {flt} )"], 30, quiet=True)
               .stdout.splitlines())


def rss_all(suite):
    return [tipcast_proc.rss_kb(p.pid) or 0 for p in suite.servers]


def run(suite):
    s = suite.s
    servers = -(-s.s3_conns // s.s3_per_server)
    clients = -(-s.s3_conns // s.s3_per_client)
    suite.log(f"scenario 3: {s.s3_conns} idle connections, {servers} tipcastd (--reuse-port) x {clients} bench processes")
    suite.stop_tipcastd()
    suite.start_tipcastd(servers, TC_MAX_CONNS, tolerate=True)
    ports = [s.tc_port]
    own_ports = False
    if len(suite.servers) < servers:
        # Without a working --reuse-port only the first process listens: give
        # each process its own port and each bench process its own server.
        suite.warn(f"only {len(suite.servers)} of {servers} tipcastd processes listen (--reuse-port); one port each instead")
        suite.fig("s3.servers_failed", servers - len(suite.servers))
        suite.stop_tipcastd()
        ports = suite.start_tipcastd_ports(servers, TC_MAX_CONNS)
        own_ports, clients = True, servers
    time.sleep(1)
    rss0 = rss_all(suite)
    # Every connection asked for: the first S3_CONNS % clients processes
    # open one more than the others.
    per, rem = divmod(s.s3_conns, clients)
    # Opening is the expensive part (handshake, token, join): 3000 per second
    # in all starved six tipcastd on 2 cores; 1500 gets through.
    open_rate = max(100, s.s3_open_rate // clients)
    hold = per // open_rate + s.s3_hold
    pids = [a for p in suite.servers for a in ("--server-pid", p.pid)]
    for i in range(clients):
        lo = 40 + 4 * i
        suite.bench_bg(f"s3-idle-p{i}", hold + 90, "--target", "tipcast",
                       "--port", ports[i] if own_ports else s.tc_port, "--secret", SECRET,
                       "--idle", "--connections", per + (i < rem), "--open-rate", open_rate,
                       "--rooms", s.rooms, "--senders", 0, "--warmup", 0, "--duration", s.s3_hold,
                       "--source-addrs", f"{lo}-{lo + 3}", "--user-base", i * 100000, *pids)
    # The plateau: the count stops growing for 5 s (or reaches the target).
    # RSS is read whenever the count is at a new high, so a bench process
    # that gives up (and closes its connections) does not spoil the figure.
    last, still, held, rss_peak = -1, 0, 0, []
    t0 = time.monotonic()
    while time.monotonic() - t0 < hold:
        n = established(suite, ports)
        if n > held:
            held, rss_peak = n, rss_all(suite)
        if n >= s.s3_conns:
            still = 5
        still = still + 1 if n == last else 0
        last = n
        if still >= 5 and n > 0:
            break
        time.sleep(1)
    time.sleep(2)  # joins answered, buffers settled
    n = established(suite, ports)
    if n >= held:
        rss1 = rss_all(suite)
    else:
        n, rss1 = held, rss_peak
    delta = sum(after - before for after, before in zip(rss1, rss0))
    per_conn = g6(delta / n) if n > 0 else ""
    suite.fig("s3.target", s.s3_conns)
    suite.fig("s3.servers", servers)
    suite.fig("s3.clients", clients)
    suite.fig("s3.held", n)
    suite.fig("s3.rss_delta_kb", delta)
    suite.fig("s3.rss_kb_per_conn", per_conn)
    suite.fig("s3.rss_kb_each", " ".join(map(str, rss1)))
    suite.log(f"  {n} connections held; RSS +{delta} KiB = {per_conn} KiB per connection")
    for job in suite.jobs:
        job.terminate()
    suite.wait_bg()
    suite.fig("s3.joined", joined(suite, clients, per, rem))
    suite.stop_tipcastd()


def joined(suite, clients, per, rem):
    """Connections the bench processes got authenticated and joined (from
    their JSON; a process that gave up writes none, only "tipcast-bench: F
    of N connections failed or did not get ready")."""
    total = 0
    for i in range(clients):
        j = suite.jget(f"s3-idle-p{i}", "totals", "connections", "joined")
        if j is None:
            n_i = per + (i < rem)
            failed = n_i
            try:
                with open(suite.path(f"s3-idle-p{i}.log"), encoding="utf-8", errors="replace") as f:
                    m = re.search(r"^tipcast-bench: (\d+) of \d+ connections failed", f.read(), re.M)
                failed = int(m.group(1)) if m else n_i
            except OSError:
                pass
            j = n_i - failed
        total += int(j)
    return total
