"""suite.py - the machinery every benchmark scenario shares: the settings (BENCH_* environment, sizes), the figures file, commands run with time bounds, psql and redis-cli, the tipcastd and tipcast-bench processes, and stopping everything that was started.

The settings are described at the top of bench/run.py. tipcastd processes are
started, waited for and stopped by scripts/tipcast_proc.py, as in the tests.
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import tipcast_proc  # noqa: E402

import report  # noqa: E402  (bench/report.py reads the same JSON files)

SECRET = "bench-secret-not-for-production-0123456789abcdef"
TC_MAX_CONNS = 19500        # below ulimit -n 20000 with backend fds
READY_TIMEOUT_S = 30        # tipcastd answering /readyz
JOB_KILL_AFTER_S = 5        # a tipcast-bench past its bound: TERM, then KILL after this


class BenchError(Exception):
    """A step failed and the run cannot go on."""


def g6(x):
    """A number as the old shell suite printed it (awk's %.6g)."""
    return f"{x:.6g}"


def token(sub, role, ttl_s=3600):
    """A JWT for tipcastd signed with the benchmark's secret (HS256)."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": sub, "role": role, "exp": int(time.time()) + ttl_s}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def jtext(v):
    """A JSON value as text for figures.tsv (as `jq -r` prints it); "" for null."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class Settings:
    """The BENCH_* environment and the sizes of a full or a quick run."""

    def __init__(self, env):
        def text(name, default):
            return env.get(name) or default

        def whole(name, default):
            value = env.get(name) or str(default)
            try:
                return int(value)
            except ValueError:
                raise BenchError(f"{name} must be a whole number, not {value!r}") from None

        self.quick_text = text("BENCH_QUICK", "0")
        self.quick = self.quick_text not in ("0", "")

        def pick(full, quick):
            return quick if self.quick else full

        self.only = text("BENCH_ONLY", "1 4 5 6 2 12 8 9 11 3 10 7").split()
        self.build = os.path.abspath(text("BENCH_BUILD_DIR", "build"))
        self.out = os.path.abspath(text("BENCH_OUT", "/tmp/tipcast-bench-out"))
        self.peers = os.path.abspath(text("BENCH_PEERS", os.path.join(REPO, "bench", "peers")))
        self.node_dir = os.path.abspath(text("BENCH_NODE_DIR", "/tmp/tipcast-bench-peers"))
        self.instance = text("BENCH_INSTANCE", "bench")
        self.redis_port = whole("BENCH_REDIS_PORT", 6396)
        self.pg_port = whole("BENCH_PG_PORT", 5496)
        self.tc_port = whole("BENCH_PORT", 8096)
        self.admin_port = whole("BENCH_ADMIN_PORT", 8097)
        self.nchan_port = whole("BENCH_NCHAN_PORT", 8091)
        self.node_port = whole("BENCH_NODE_PORT", 8092)
        self.tc_args = text("BENCH_TIPCASTD_ARGS", "").split()
        self.bench_bin = text("BENCH_BIN", "")
        self.s4_rate = text("BENCH_S4_RATE", "")
        self.no_doc = text("BENCH_NO_DOC", "0") == "1"
        self.pg_conn = f"host=127.0.0.1 port={self.pg_port} user=postgres dbname=tipcast"
        self.pg_admin = f"host=127.0.0.1 port={self.pg_port} user=postgres dbname=postgres"
        self.pg_gift = f"host=127.0.0.1 port={self.pg_port} user=postgres dbname=pgbench_gift"
        # Sizes: full / quick.
        self.rooms = pick(100, 10)             # creators seeded; scenario 1 and 3 rooms
        self.s1_conns = pick(200, 40)          # scenario 1: connections, all senders
        self.s1_rooms = pick(50, 10)           #   over this many rooms (4 members each)
        self.s1_start = pick(1000, 300)        #   find-max starts here (gifts/s)
        self.s1_step_s = pick(5, 2)            #   seconds per step
        self.s1_max_steps = pick(16, 8)        #   bound on the steps (--duration)
        self.ceil_n = pick(400000, 40000)      # redis-benchmark requests
        self.pgb_t = pick(20, 5)               # pgbench seconds
        self.s2_subs = whole("BENCH_FANOUT_SUBS", pick(10000, 1000))
        self.s2_rate = text("BENCH_FANOUT_RATE", str(pick(1, 2)))
        if report.num(self.s2_rate) is None or report.num(self.s2_rate) <= 0:
            raise BenchError(f"BENCH_FANOUT_RATE must be a positive number, not {self.s2_rate!r}")
        self.s2_p99_ms = 100                   # the delivery latency bound
        self.s2_procs = 2                      # bench processes sharing the room
        self.s2_warm = pick(6, 3)
        self.s2_dur = pick(15, 5)
        self.s2_max_steps = pick(12, 2)        # x1.5 steps above the steady rate
        self.s2_step_dur = pick(6, 3)
        self.s3_conns = whole("BENCH_IDLE_CONNS", pick(100000, 4000))
        self.s3_per_server = pick(17000, 2000)  # average per tipcastd (limit 19500)
        self.s3_per_client = pick(19000, 2000)  # per bench process (fd limit 20000)
        self.s3_hold = pick(30, 15)            # hold after opening (and bound on the plateau)
        self.s3_open_rate = whole("BENCH_IDLE_OPEN_RATE", 1500)  # connections/s, all bench processes
        self.s4_dur = pick(20, 5)
        self.s4_outage_s = pick(10, 4)
        self.s5_recharges = pick(4000, 400)    # scenario 5: recharges created and paid
        self.s6_rate = whole("BENCH_S6_RATE", pick(1000, 300))  # scenario 6: gifts/s, rules off and on
        self.s6_dur = pick(15, 5)              #   seconds per run
        self.s7_orders = whole("BENCH_STATS_ORDERS", pick(10000000, 200000))  # scenario 7: orders loaded
        self.s7_reps = pick(50, 10)            # scenario 7: timings per query
        self.s8_rate = whole("BENCH_S8_RATE", pick(1000, 300))  # scenario 8: gifts/s at the fixed rate
        self.s8_dur = pick(15, 5)              #   seconds per fixed-rate run
        self.s8_fan_rates = pick(["1", "10", "50"], ["2", "10"])  # hot-room events/s
        self.s8_base = text("BENCH_S8_BASE", "dfd31ac")  # the commit before issue 14's features; "none": skip
        self.s9_rate = whole("BENCH_S9_RATE", pick(1000, 300))  # scenario 9: gifts/s, WAIT off and on
        self.s11_rate = whole("BENCH_S11_RATE", pick(1000, 300))  # scenario 11: gifts/s, one Redis and a cluster
        self.s12_rates = pick(["1", "10", "100"], ["1", "10", "50"])  # scenario 12: events/s in the hot room
        self.s12_peer_rates = pick(["1", "10"], ["1", "10"])         #   the rates Nchan runs too
        self.s12_senders = pick(50, 10)        #   viewers sending into the room (one process)
        self.s12_passes = pick(2, 1)           #   passes per rate, tipcast and Nchan taking turns
        self.s12_warm = pick(4, 2)             #   warm-up after every connection is open
        self.s12_dur = pick(20, 5)             #   measured seconds per step
        self.s10_rounds = whole("BENCH_S10_ROUNDS", pick(3, 1))  # scenario 10: turns of the three databases


class Job:
    """One tipcast-bench run in the background, stopped at its time bound:
    JSON, SVG and log under OUT/NAME.*."""

    def __init__(self, suite, name, bound_s, args):
        self.name = name
        self.deadline = time.monotonic() + bound_s
        out = suite.s.out
        self.log = open(os.path.join(out, name + ".log"), "wb")
        cmd = [suite.bench_bin, "--quiet", "--json", os.path.join(out, name + ".json"),
               "--svg", os.path.join(out, name + ".svg"), *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.rc = None

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def finish(self):
        """Waits until it ends or its bound passes; the exit code (124 past the bound)."""
        if self.rc is None:
            try:
                self.rc = self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stop()
                self.rc = 124
            self.log.close()
        return self.rc

    def stop(self):
        """TERM now, KILL after a few seconds."""
        self.rc = tipcast_proc.stop_popen(self.proc, JOB_KILL_AFTER_S)
        self.log.close()


class Suite:
    """One benchmark run: its settings, its figures, and what it started."""

    def __init__(self, settings):
        self.s = settings
        self.tipcastd = None
        self.bench_bin = None
        self.servers = []          # running tipcastd (tipcast_proc.Process)
        self.jobs = []             # tipcast-bench runs not yet waited for
        self.peers = []            # peer servers (objects with an idempotent stop())
        self.started_services = False
        self.s1_max = ""           # scenario 1's maximum (gifts/s), for scenario 4

    # --- output --------------------------------------------------------------
    @staticmethod
    def log(msg):
        print(f"==> [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    @staticmethod
    def warn(msg):
        print(f"bench: warning: {msg}", file=sys.stderr, flush=True)

    def has(self, scenario):
        return str(scenario) in self.s.only

    def path(self, name):
        return os.path.join(self.s.out, name)

    def fig(self, key, value):
        """One figure for the report (bench/report.py reads figures.tsv)."""
        with open(self.path("figures.tsv"), "a", encoding="utf-8") as f:
            f.write(f"{key}\t{'' if value is None else value}\n")

    def jget(self, name, *keys):
        """A value from OUT/NAME.json (None when the file or the value is missing)."""
        return report.get(report.load_json(self.s.out, name), *keys)

    # --- commands ------------------------------------------------------------
    @staticmethod
    def run(cmd, timeout, stdin_text=None, quiet=False, env=None, merge=False, capture=True):
        """Runs a command to its end or its time bound; a CompletedProcess whose
        returncode is 124 when the bound passed (the command is killed) and 127
        when it could not be started. stdout is captured (with stderr when
        merge) unless capture is False; stderr otherwise goes to ours, or
        nowhere when quiet."""
        stderr = subprocess.STDOUT if merge else (subprocess.DEVNULL if quiet else None)
        try:
            return subprocess.run([str(c) for c in cmd], input=stdin_text, text=True,
                                  stdout=subprocess.PIPE if capture else None, stderr=stderr,
                                  timeout=timeout,
                                  env=None if env is None else {**os.environ, **env},
                                  stdin=None if stdin_text is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return subprocess.CompletedProcess(cmd, 124, out, "")
        except OSError as e:
            return subprocess.CompletedProcess(cmd, 127, "", str(e))

    def pg(self, conn, *sql, file=None, timeout=60, quiet=False):
        """psql: each SQL string as its own -c (and a file with -f); the output
        (unaligned, tuples only) stripped, or None when psql failed."""
        cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", conn]
        for s in sql:
            cmd += ["-c", s]
        if file:
            cmd += ["-f", file]
        p = self.run(cmd, timeout, quiet=quiet)
        return p.stdout.strip() if p.returncode == 0 else None

    def cpu_seconds(self):
        """CPU seconds (user + system) of the first tipcastd, or None."""
        return tipcast_proc.cpu_s(self.servers[0].pid) if self.servers else None

    def rcli(self, *args, stdin_text=None):
        """redis-cli on the benchmark's Redis; its output stripped, or None."""
        p = self.run(["redis-cli", "-h", "127.0.0.1", "-p", self.s.redis_port, *args], 30,
                     stdin_text=stdin_text, quiet=True)
        return p.stdout.strip() if p.returncode == 0 else None

    def services(self, command, timeout, quiet=True):
        """scripts/services.sh COMMAND on the benchmark's instance; True on success."""
        p = self.run(["bash", os.path.join(REPO, "scripts", "services.sh"), command, self.s.instance],
                     timeout, quiet=quiet,
                     env={"TIPCAST_REDIS_PORT": str(self.s.redis_port),
                          "TIPCAST_PG_PORT": str(self.s.pg_port)})
        if not quiet and p.stdout:
            sys.stderr.write(p.stdout)
        return p.returncode == 0

    # --- tipcastd ------------------------------------------------------------
    def spawn_tipcastd(self, port, max_conns, log_name, reuse_port=None):
        settings = {
            "port": port, "reuse_port": reuse_port,
            "redis_host": "127.0.0.1", "redis_port": self.s.redis_port, "pg": self.s.pg_conn,
            "jwt_secret": SECRET, "max_msgs_per_s": 100000, "max_burst": 1000000,
            "max_connections": max_conns, "log_level": "warn",
            # The admin API (scenario 5); several processes share it like
            # the public port (reuse-port).
            "admin_listen": f"127.0.0.1:{self.s.admin_port}",
            "payment_secret": "bench-payment-secret-0123456789",
        }
        argv = tipcast_proc.tipcastd_argv(self.tipcastd, settings, self.s.tc_args)
        proc = tipcast_proc.Process(argv, self.path(log_name), append=True)
        self.servers.append(proc)
        return proc

    def ready(self, proc, port=None):
        """True once tipcastd answers /readyz (False if it exits or takes too long)."""
        try:
            proc.wait_http("/readyz", port=port or self.s.tc_port, timeout=READY_TIMEOUT_S,
                           interval=0.1)
            return True
        except tipcast_proc.NotReady:
            return False

    def start_tipcastd(self, count, max_conns, tolerate=False):
        """COUNT processes on BENCH_PORT (--reuse-port when more than one); the
        first applies the migrations before the others start. With tolerate,
        a process after the first that does not come up is dropped (with a
        warning) instead of failing the run."""
        reuse = 1 if count > 1 else 0
        started = []
        for i in range(count):
            started.append(self.spawn_tipcastd(self.s.tc_port, max_conns, f"tipcastd-{i}.log", reuse))
            if i == 0 and not self.ready(started[0]):
                raise BenchError(f"tipcastd did not become ready (see {self.path('tipcastd-0.log')})")
        time.sleep(1)
        for i, proc in enumerate(started):
            if proc.alive():
                continue
            if i == 0 or not tolerate:
                raise BenchError(f"tipcastd {i} exited (see {self.path(f'tipcastd-{i}.log')})")
            self.warn(f"tipcastd {i} exited (see {self.path(f'tipcastd-{i}.log')}); going on with the others")
            proc.stop()
            self.servers.remove(proc)
        if not self.ready(started[0]):
            raise BenchError("tipcastd not ready")

    def start_tipcastd_ports(self, count, max_conns):
        """COUNT processes, each on its own free port from BENCH_PORT up (busy
        ports are skipped); returns the ports."""
        ports = []
        port = self.s.tc_port
        for i in range(count):
            while tipcast_proc.port_open(port):
                port += 1
            if port >= self.s.tc_port + 100:
                raise BenchError(f"no free port for tipcastd from {self.s.tc_port}")
            proc = self.spawn_tipcastd(port, max_conns, f"tipcastd-port{i}.log")
            ports.append(port)
            time.sleep(0.3)  # a bind failure shows before readyz is asked
            if not self.ready(proc, port):
                raise BenchError(f"tipcastd on port {port} did not become ready "
                                 f"(see {self.path(f'tipcastd-port{i}.log')})")
            port += 1
        return ports

    def stop_tipcastd(self):
        for proc in self.servers:
            proc.stop()
        self.servers = []

    # --- the load generator --------------------------------------------------
    def bench_bg(self, name, bound_s, *args):
        """tipcast-bench in the background (waited for by wait_bg)."""
        self.jobs.append(Job(self, name, bound_s, args))

    def wait_bg(self):
        """Waits for every background run; the last non-zero exit code, or 0."""
        rc = 0
        while self.jobs:
            job = self.jobs[0]
            rc = job.finish() or rc
            self.jobs.pop(0)
        return rc

    def find_max(self, name):
        """tipcast-bench --find-max (ack p99 <= 50 ms) with scenario 1's senders
        and rooms against the first tipcastd; its highest rate (text), or ""."""
        s = self.s
        self.bench(name, s.s1_step_s * s.s1_max_steps + 120, "--target", "tipcast", "--port", s.tc_port,
                   "--secret", SECRET, "--connections", s.s1_conns, "--senders", s.s1_conns, "--rooms", s.s1_rooms,
                   "--rate", s.s1_start, "--find-max", "--p99-bound-ms", 50, "--step-seconds", s.s1_step_s,
                   "--warmup", 2, "--duration", s.s1_step_s * s.s1_max_steps, "--server-pid", self.servers[0].pid)
        return jtext(self.jget(name, "find_max", "max_rate"))

    def bench(self, name, bound_s, *args):
        """One tipcast-bench run, waited for; its exit code."""
        self.bench_bg(name, bound_s, *args)
        rc = self.wait_bg()
        if rc != 0:
            self.warn(f"tipcast-bench {name} exited with {rc} (see {self.path(name + '.log')})")
        return rc

    # --- the end -------------------------------------------------------------
    def stop_all(self):
        """Stops everything this run started; signals are ignored meanwhile
        (every step here has a time bound)."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for job in self.jobs:
            job.stop()
        self.jobs = []
        self.stop_tipcastd()
        for peer in self.peers:
            peer.stop()
        if self.started_services:
            self.log(f"stopping Redis and PostgreSQL (instance {self.s.instance})")
            self.services("stop", 90)
            self.started_services = False
