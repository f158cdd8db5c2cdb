"""Fixtures of the tipcast end-to-end tests.

Environment (set by CTest / scripts/test.sh; the defaults suit a local run):
  TIPCAST_TEST_BIN        path of tipcastd (default: build/server/tipcastd)
  TIPCAST_REDIS_HOST      Redis host (default 127.0.0.1)
  TIPCAST_REDIS_PORT      Redis port (default 6392)
  TIPCAST_PG              libpq conninfo of PostgreSQL
                          (default host=127.0.0.1 port=5492 dbname=tipcast user=postgres)
  TIPCAST_TEST_SANITIZED  1 when tipcastd is an ASan/UBSan build: its stderr
                          is then checked for sanitizer reports.
  TIPCAST_REDIS_CLUSTER   seed nodes host:port,... of a Redis Cluster
                          (scripts/cluster.sh env NAME): every tipcastd then
                          runs with redis-cluster, and the tests' own Redis
                          client (tests/resp.py) follows the cluster's slots.
                          Tests that need one Redis of their own are skipped.

Every test starts its own tipcastd on a free port; Redis and PostgreSQL are
shared, so every test uses rooms and users of its own (unique names).
"""

import base64
import hashlib
import hmac
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time

import pytest

import wsclient
from wsclient import SUBPROTOCOL_JSON, unique

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Starting and stopping tipcastd is shared with the benchmark (bench/).
sys.path.insert(0, os.path.join(REPO, "scripts"))
import tipcast_proc  # noqa: E402

TEST_SECRET = "tipcast-test-secret-0123456789abcdef"

SANITIZED = os.environ.get("TIPCAST_TEST_SANITIZED") == "1"
REDIS_HOST = os.environ.get("TIPCAST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = os.environ.get("TIPCAST_REDIS_PORT", "6392")
# tipcastd reads TIPCAST_REDIS_CLUSTER too (its redis-cluster setting): taken
# out of the environment here, it reaches only the nodes the server factory
# starts, and a test that runs tipcastd on a Redis of its own gets that one.
REDIS_CLUSTER = os.environ.pop("TIPCAST_REDIS_CLUSTER", "")
PG = os.environ.get("TIPCAST_PG", "host=127.0.0.1 port=5492 dbname=tipcast user=postgres")

# Every tipcastd of the tests places wallets on this many shards: the
# number is recorded in the shared test Redis by the first node and checked
# by every later one (gifts/outbox.h), so all tests use the same.
WALLET_SHARDS = 4

READY_TIMEOUT_S = 20 if SANITIZED else 10
# A node on the suite's own Redis and PostgreSQL is also waited for until
# /readyz answers 200 (its money requests answer `unavailable` before),
# for at most this long: a test that starts one with them down goes on.
READYZ_WAIT_S = 5
STOP_TIMEOUT_S = tipcast_proc.STOP_TIMEOUT_S
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _binary():
    path = os.environ.get("TIPCAST_TEST_BIN")
    if path:
        if not os.access(path, os.X_OK):
            pytest.fail(f"TIPCAST_TEST_BIN={path} is not an executable file")
        return path
    path = os.path.join(REPO, "build", "server", "tipcastd")
    if not os.access(path, os.X_OK):
        pytest.skip(f"no tipcastd: set TIPCAST_TEST_BIN or build {path}")
    return path


# Every port free_port() has returned in this process: a node's port and its
# admin port are both taken before either is bound, so the second draw must not
# return the first (it did, once, in CI: "Address already in use", exit 1).
_ports_given = set()


def free_port():
    """A TCP port that was free a moment ago. It is taken below the kernel's
    ephemeral range (ip_local_port_range), so that no client socket of a
    test (the load generator opens thousands) can hold it by chance."""
    lo = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo = int(f.read().split()[0])
    except (OSError, ValueError):
        pass
    for _ in range(200):
        port = random.randrange(max(1024, lo - 12000), lo)
        if port in _ports_given:
            continue  # free now, but handed out already (a node's two listeners)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            _ports_given.add(port)
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free TCP port below the ephemeral range")


_server_serial = itertools.count(1)


class Server(tipcast_proc.Process):
    """One running tipcastd (started, waited for and stopped by
    scripts/tipcast_proc.py; the pytest side is here)."""

    def __init__(self, args, port, log_dir, tls=False, admin_port=None, host="127.0.0.1"):
        self.port = port
        self.host = host  # the address it listens on (another one in a network namespace)
        self.admin_port = admin_port  # the admin API's port (admin-listen), None when off
        self.tls = tls
        # Several servers may share a port (--reuse-port): number the logs.
        n = next(_server_serial)
        self.clients = []
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:halt_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        super().__init__(args, os.path.join(log_dir, f"tipcastd-{port}-{n}.stdout"),
                         os.path.join(log_dir, f"tipcastd-{port}-{n}.stderr"), env=env)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, n=60):
        lines = self.stderr_text().splitlines()
        return "\n".join(lines[-n:])

    def last_error(self):
        """The last error line tipcastd logged, for a one-line failure reason."""
        errors = [l for l in self.stderr_text().splitlines() if "level=error" in l]
        return errors[-1][-200:] if errors else "no error logged"

    def describe(self):
        return (f"tipcastd {' '.join(self.args[1:])}\n--- stderr tail ---\n"
                f"{self.stderr_tail()}\n--- end ---")

    def wait_ready(self, timeout=READY_TIMEOUT_S, readyz=False):
        """Waits for /healthz; with readyz, then for /readyz's 200 as well (its
        wallet has checked Redis: on a cluster, master by master), for at most
        READYZ_WAIT_S; after that the test goes on and meets the node as it is."""
        probe = lambda path: self.http_get(path, timeout=1)[0]
        try:
            self.wait_http("/healthz", timeout=timeout, probe=probe)
        except tipcast_proc.NotReady as e:
            if e.exited:
                pytest.fail(f"tipcastd exited with {e.returncode} while starting"
                            f" ({self.last_error()})\n" + self.describe())
            pytest.fail(f"tipcastd not ready within {timeout}s (last: {e.last})\n" + self.describe())
        if readyz:
            try:
                self.wait_http("/readyz", timeout=READYZ_WAIT_S, probe=probe)
            except tipcast_proc.NotReady:
                pass  # not ready, or gone: the test meets it as it is

    def http_get(self, path, timeout=5, headers=None):
        return wsclient.http_get(self.port, path, tls=self.tls, headers=headers,
                                 timeout=timeout, host=self.host)

    def connect(self, **kw):
        """wsclient.connect to this server; the client is closed at teardown."""
        kw.setdefault("tls", self.tls)
        kw.setdefault("host", self.host)
        c = wsclient.connect(self.port, **kw)
        self.clients.append(c)
        return c

    def check_exit(self):
        """Stops the server and asserts a clean exit and a clean stderr."""
        for c in self.clients:
            c.close()
        rc = self.stop()
        problems = []
        if getattr(self, "killed", False):
            pass  # killed on purpose by the test (SIGKILL): no exit code to check
        elif rc is None:
            problems.append(f"did not exit within {STOP_TIMEOUT_S}s of SIGTERM (killed)")
        elif rc != 0:
            problems.append(f"exit code {rc}")
        if SANITIZED:
            text = self.stderr_text()
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    problems.append(f"sanitizer report: {marker!r}")
        if problems:
            pytest.fail("tipcastd: " + "; ".join(problems) + "\n" + self.describe(),
                        pytrace=False)


class ServerFactory:
    def __init__(self, log_dir):
        self.log_dir = str(log_dir)
        self.servers = []

    def __call__(self, **overrides):
        """Starts tipcastd with the test settings plus overrides
        (python names: max_frame_bytes=4096 -> --max-frame-bytes=4096).
        A value of None drops a default flag. netns=NAME runs it in that
        network namespace (`ip netns exec`), listening on listen_addr."""
        netns = overrides.pop("netns", None)
        port = overrides.pop("port", None) or free_port()
        flags = {
            "port": port,
            "listen-addr": "127.0.0.1",
            "redis-host": REDIS_HOST,
            "redis-port": REDIS_PORT,
            "pg": PG,
            "jwt-secret": TEST_SECRET,
            "wallet-shards": WALLET_SHARDS,
            # Every test's node has an admin API of its own (admin-listen's
            # default port would be taken by the first).
            "admin-listen": f"127.0.0.1:{free_port()}",
        }
        if REDIS_CLUSTER and "redis_port" not in overrides and "redis_host" not in overrides:
            flags["redis-cluster"] = REDIS_CLUSTER  # (a test that names a Redis brings its own)
        for k, v in overrides.items():
            flags[k.replace("_", "-")] = v
        args = tipcast_proc.tipcastd_argv(_binary(), flags)
        if netns:
            args = ["ip", "netns", "exec", netns] + args  # ip execs tipcastd: the pid is tipcastd's
        admin = flags.get("admin-listen")
        srv = Server(args, port, self.log_dir, tls=bool(flags.get("tls-cert")),
                     admin_port=int(admin.rsplit(":", 1)[1]) if admin else None,
                     host=flags["listen-addr"] if netns else "127.0.0.1")
        self.servers.append(srv)
        own_backends = not ({"redis_port", "redis_host", "pg", "redis_cluster"} & set(overrides))
        srv.wait_ready(readyz=own_backends)
        return srv

    def teardown(self):
        errors = []
        for srv in self.servers:
            try:
                srv.check_exit()
            except BaseException as e:  # report every server, not just the first
                errors.append(e)
        if errors:
            raise errors[0]


@pytest.fixture
def server(tmp_path):
    """Factory: start_server(**overrides) -> Server; stopped (and checked)
    at the end of the test."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.teardown()


@pytest.fixture(scope="session", autouse=True)
def schema(tmp_path_factory):
    """The schema in the test PostgreSQL before any test writes to it:
    tipcastd applies the migrations at start, so on a database that has
    none yet one tipcastd is started and stopped first (test modules seed
    gifts and creators with psql in their fixtures)."""
    out = subprocess.run(["psql", PG, "-X", "-qAtc", "SELECT to_regclass('orders') IS NOT NULL"],
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 0 and out.stdout.strip() == "t":
        return
    factory = ServerFactory(tmp_path_factory.mktemp("schema"))
    factory()
    factory.teardown()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory):
    """Like server, but servers live until the end of the module."""
    factory = ServerFactory(tmp_path_factory.mktemp("srv"))
    yield factory
    factory.teardown()


class TcpProxy:
    """A TCP forwarder on 127.0.0.1 (or `bind`) to host:port, for cutting a
    backend off while tipcastd runs, or for reaching it from another network
    namespace. cut() drops every forwarded connection and refuses
    new ones (accepts and closes them at once); restore() forwards again."""

    def __init__(self, host, port, bind="127.0.0.1"):
        self.target = (host, int(port))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((bind, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self.closed = False
        self.lock = threading.Lock()
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.cut_off = True
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self):
        self.cut_off = False

    def close(self):
        self.closed = True
        self.cut()
        self.listener.close()


class Proxies:
    """Makes TcpProxy objects in front of the test Redis and PostgreSQL."""

    def __init__(self):
        self.all = []

    def make(self, host, port):
        p = TcpProxy(host, port)
        self.all.append(p)
        return p

    def pg(self):
        """(proxy, conninfo): TIPCAST_PG, going through a new proxy."""
        kv = dict(p.split("=", 1) for p in PG.split() if "=" in p)
        proxy = self.make(kv.get("host", "127.0.0.1"), kv.get("port", "5432"))
        parts = [p for p in PG.split() if not p.startswith(("host=", "port=", "hostaddr="))]
        return proxy, " ".join(parts + ["host=127.0.0.1", f"port={proxy.port}"])

    def redis(self):
        """A proxy to the test Redis (pass redis_port=proxy.port)."""
        if REDIS_CLUSTER:
            pytest.skip("cuts the link to the one test Redis; the cluster's masters are reached directly")
        return self.make(REDIS_HOST, REDIS_PORT)

    def close(self):
        for p in self.all:
            p.close()


@pytest.fixture
def proxies():
    """proxies.pg() / proxies.redis(): TCP forwarders that a test can cut."""
    p = Proxies()
    yield p
    p.close()


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(sub, role="viewer", exp_in=3600, kid=None, secret=TEST_SECRET, alg="HS256",
               extra=None):
    """An HS256 JWT, made here independently of the server's code.

    alg="none" makes an unsigned token (empty signature). extra adds or
    overrides claims (a value of None removes the claim)."""
    header = {"alg": alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims = {"sub": sub, "role": role, "exp": int(time.time()) + exp_in}
    for k, v in (extra or {}).items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    signing_input = (_b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if alg == "none":
        return signing_input + "."
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)


@pytest.fixture
def mint():
    return mint_token


@pytest.fixture
def room():
    """A fresh room id (its owner is the user of the same id)."""
    return unique("r")


@pytest.fixture
def client(server):
    """client(srv, user, role='viewer', subprotocol=json, **connect_kw):
    connects with ?token=, consumes the welcome, returns the WSClient.
    Every client is closed at the end of the test."""
    opened = []

    def make(srv, user, role="viewer", subprotocol=SUBPROTOCOL_JSON, **kw):
        token = mint_token(user, role)
        c = srv.connect(subprotocol=subprotocol, token=token, **kw)
        opened.append(c)
        w = c.expect("welcome")
        assert w.get("user") == user and w.get("role") == role, w
        c.welcome = w
        return c

    yield make
    for c in opened:
        c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Adds the stderr tail of every tipcastd the test used to its failure
    report, so that a failure shows what the server said."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {})
    for name in ("server", "module_server"):
        factory = funcargs.get(name)
        for srv in getattr(factory, "servers", []):
            state = "running" if srv.alive() else f"exited {srv.proc.returncode}"
            rep.sections.append((f"tipcastd :{srv.port} ({state}) stderr tail",
                                 srv.stderr_tail()))


SERVICES = os.path.join(REPO, "scripts", "services.sh")


class PostgresOutage:
    """Stops and restarts the test instance's PostgreSQL (scripts/services.sh)
    for outage tests. Use as a context manager: down inside, up after."""

    def __init__(self, instance):
        self.instance = instance

    def _run(self, cmd, attempts):
        last = None
        for _ in range(attempts):
            last = subprocess.run(["bash", SERVICES, cmd, self.instance], capture_output=True, text=True,
                                  timeout=120)
            if last.returncode == 0:
                return
            time.sleep(1)
        raise AssertionError(f"services.sh {cmd} {self.instance} failed:\n{last.stdout}\n{last.stderr}")

    def __enter__(self):
        self._run("stop-postgres", 1)
        return self

    def __exit__(self, *exc):
        # A start that fails would leave every later test without PostgreSQL:
        # try again before giving up, and say why.
        self._run("start", 5)
        return False


@pytest.fixture
def pg_outage():
    """pg_outage() -> a context manager during which PostgreSQL is down.
    Skips when PostgreSQL is not managed by scripts/services.sh here
    (TIPCAST_TEST_INSTANCE names the instance; scripts/test.sh sets it)."""
    instance = os.environ.get("TIPCAST_TEST_INSTANCE", "test")
    if subprocess.run(["bash", SERVICES, "status", instance], capture_output=True).returncode != 0:
        pytest.skip("PostgreSQL is not managed by scripts/services.sh here (set TIPCAST_TEST_INSTANCE)")
    return lambda: PostgresOutage(instance)
