"""s2_fanout.py - scenario 2 of the benchmark: one hot room with many subscribers on tipcast, on Nchan and on Node ws (the peers in bench/peers/, started and stopped here), at one steady rate and then in x1.5 steps."""

import os
import re
import signal
import sys

from report import num
from suite import SECRET, g6, tipcast_proc


def wait_port(port, alive=lambda: True):
    """True once something accepts connections on the port (within 10 s, and
    while the server lives)."""
    return tipcast_proc.wait_for(lambda: tipcast_proc.port_open(port), 10, alive) == "ok"


class Peer:
    """A reference server of scenario 2, started from its file in BENCH_PEERS
    on its own port; start() is False when it cannot be run."""

    target = what = short = file = port_setting = None

    def __init__(self, suite, port):
        self.suite = suite
        self.port = port

    def usable(self):
        return True

    def start(self):
        path = os.path.join(self.suite.s.peers, self.file)
        if not (os.path.isfile(path) and self.usable()):
            return False
        if tipcast_proc.port_open(self.port):
            self.suite.warn(f"port {self.port} is in use by another process (set {self.port_setting})")
            return False
        return self.launch(path)


class Nchan(Peer):
    """nginx with the peer's nchan.conf, its port set, in a scratch prefix
    (BENCH_OUT/nchan/)."""

    target, what, short, file, port_setting = "nchan", "Nchan", "Nchan", "nchan.conf", "BENCH_NCHAN_PORT"

    def __init__(self, suite):
        super().__init__(suite, suite.s.nchan_port)
        self.prefix = suite.path("nchan")
        self.conf = os.path.join(self.prefix, "nchan.conf")
        self.started = False

    def launch(self, path):
        suite = self.suite
        os.makedirs(os.path.join(self.prefix, "tmp"), exist_ok=True)
        with open(path, encoding="utf-8") as f:
            text = re.sub(r"listen\s+127\.0\.0\.1:\d+", f"listen 127.0.0.1:{self.port}", f.read())
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(text)
        p = suite.run(["nginx", "-c", self.conf, "-p", self.prefix + "/"], 20, merge=True)
        with open(suite.path("nchan.log"), "w", encoding="utf-8") as f:
            f.write(p.stdout)
        if p.returncode != 0:
            sys.stderr.write(p.stdout)
            return False
        self.started = True
        return wait_port(self.port)

    def master_pid(self):
        try:
            with open(os.path.join(self.prefix, "nginx.pid"), encoding="utf-8") as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def server_pid(self):
        """The worker's pid (one worker serves every connection). The master
        listens before it has forked the worker: waits for it, a few
        seconds at most; "" when there is none."""
        kids = []

        def worker():
            master = self.master_pid()
            kids[:] = tipcast_proc.child_pids(master) if master else []
            return bool(kids)

        tipcast_proc.wait_for(worker, 5)
        return kids[0] if kids else ""

    def stop(self):
        if not self.started:
            return
        master = self.master_pid()
        workers = tipcast_proc.child_pids(master) if master else []
        self.suite.run(["nginx", "-c", self.conf, "-p", self.prefix + "/", "-s", "quit"], 10, quiet=True)
        for pid in ([master] if master else []) + workers:
            tipcast_proc.wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.started = False


class NodeWs(Peer):
    """node running the peer's ws-broadcast.js, with `ws` from BENCH_NODE_DIR."""

    target, what, short, file, port_setting = "ws", "Node ws-broadcast", "Node", "ws-broadcast.js", "BENCH_NODE_PORT"

    def __init__(self, suite):
        super().__init__(suite, suite.s.node_port)
        self.modules = os.path.join(suite.s.node_dir, "node_modules")
        self.proc = None

    def usable(self):
        return os.path.isfile(os.path.join(self.modules, "ws", "package.json"))

    def launch(self, path):
        self.proc = tipcast_proc.Process(["node", path, str(self.port)], self.suite.path("node.log"),
                                         env={**os.environ, "NODE_PATH": self.modules})
        return wait_port(self.port, self.proc.alive)

    def server_pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None


def fanout(suite, name, target, port, spid, rate, warm, dur, room=0):
    """S2_PROCS bench processes, S2_SUBS connections in all in one room
    (bench-room-ROOM, benchroomROOM on the peers), each sending RATE/PROCS."""
    s = suite.s
    per = s.s2_subs // s.s2_procs
    for i in range(s.s2_procs):
        lo = 2 + 8 * i
        # Each process its own viewers (bench-u<base>..).
        extra = ["--secret", SECRET, "--user-base", i * 100000] if target == "tipcast" else []
        suite.bench_bg(f"{name}-p{i}", warm + dur + 60, "--target", target, "--port", port, *extra,
                       "--connections", per, "--senders", 1, "--rooms", 1, "--room-base", room,
                       "--rate", g6(float(rate) / s.s2_procs), "--frame-bytes", 100,
                       "--open-rate", 5000, "--warmup", warm, "--duration", dur,
                       "--source-addrs", f"{lo}-{lo + 7}", "--server-pid", spid)
    suite.wait_bg()


def fanout_sum(suite, name):
    """(deliveries/s, p99 ms, CPU us per delivery, errors) over the processes,
    as text; p99 is 999999 when a process wrote none, CPU nan when unknown."""
    sum_d, max_p, missing_p, errors, cpu_rate = 0.0, 0.0, False, 0, None
    for i in range(suite.s.s2_procs):
        f = f"{name}-p{i}"
        d = num(suite.jget(f, "rates", "deliveries_per_s")) or 0.0
        p = num(suite.jget(f, "delivery_latency_ms", "p99"))
        errs = suite.jget(f, "totals", "errors") or {}
        sum_d += d
        if p is None:
            missing_p = True
        else:
            max_p = max(max_p, p)
        errors += int(sum(errs.values())) if isinstance(errs, dict) else 0
        if i == 0:
            # The server's CPU over the measured window, read by process 0.
            c = num(suite.jget(f, "server", "cpu_s"))
            dur = num(suite.jget(f, "rates", "measured_s"))
            dur = num(suite.jget(f, "config", "duration")) if dur is None else dur
            if c is not None and dur:
                cpu_rate = c / dur * 1e6 if d > 0 else 0.0
    cpu = "nan" if cpu_rate is None else g6(cpu_rate / sum_d if sum_d > 0 else 0)
    return g6(sum_d), ("999999" if missing_p else g6(max_p)), cpu, str(errors)


def fanout_target(suite, target, port, spid):
    s = suite.s
    suite.log(f"scenario 2: {target}, {s.s2_subs} subscribers in one room, {s.s2_rate} events/s")
    fanout(suite, f"s2-{target}", target, port, spid, s.s2_rate, s.s2_warm, s.s2_dur)
    d, p, c, e = fanout_sum(suite, f"s2-{target}")
    suite.fig(f"s2.{target}.rate", s.s2_rate)
    suite.fig(f"s2.{target}.deliveries_per_s", d)
    suite.fig(f"s2.{target}.p99_ms", p)
    suite.fig(f"s2.{target}.cpu_us_per_delivery", c)
    suite.fig(f"s2.{target}.errors", e)
    suite.log(f"  {target}: {d} deliveries/s, p99 {p} ms, {c} us CPU per delivery, {e} errors")

    # The maximum: x1.5 steps while the server keeps up (deliveries >= 90% of
    # rate x subscribers, no errors). Two maxima come out of the steps: the
    # highest rate with delivery p99 <= 100 ms, and the peak deliveries/s.
    def keeps(rate, d, e):
        return float(d) >= 0.9 * float(rate) * s.s2_subs and int(e) == 0

    def held(p, e):
        return float(p) <= s.s2_p99_ms and int(e) == 0

    rate, best_rate, best_d, peak_d = s.s2_rate, "", "", d
    if held(p, e):
        best_rate, best_d = s.s2_rate, d
    going = keeps(s.s2_rate, d, e)
    k = 1
    while k <= s.s2_max_steps and going:
        rate = g6(float(rate) * 1.5)
        fanout(suite, f"s2-{target}-max{k}", target, port, spid, rate, s.s2_warm, s.s2_step_dur)
        d, p, c, e = fanout_sum(suite, f"s2-{target}-max{k}")
        suite.log(f"  {target} at {rate} events/s: {d} deliveries/s, p99 {p} ms, {c} us CPU per delivery, {e} errors")
        suite.fig(f"s2.{target}.step{k}", f"{rate} {d} {p} {e} {c}")
        if held(p, e):
            best_rate, best_d = rate, d
        if float(d) > float(peak_d):
            peak_d = d
        going = keeps(rate, d, e)
        k += 1
    suite.fig(f"s2.{target}.max_rate", best_rate)
    suite.fig(f"s2.{target}.max_deliveries_per_s", best_d)
    suite.fig(f"s2.{target}.peak_deliveries_per_s", peak_d)
    suite.fig(f"s2.{target}.max_capped", int(going))


def run(suite):
    fanout_target(suite, "tipcast", suite.s.tc_port, suite.servers[0].pid)
    for peer in (Nchan(suite), NodeWs(suite)):
        suite.peers.append(peer)
        spid = peer.server_pid() if peer.start() else ""
        if spid:
            fanout_target(suite, peer.target, peer.port, spid)
        else:
            suite.warn(f"{peer.what} did not start (or has no process to measure): no {peer.short} reference")
            suite.fig(f"s2.{peer.target}.missing", 1)
        peer.stop()
