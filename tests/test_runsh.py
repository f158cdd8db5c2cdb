"""scripts/run.sh, the README's first command: whatever ends it, what it
started stops (tipcastd, then the Redis and PostgreSQL it started), and a
port in use is said first and plainly.

run.sh runs here for real, on an instance of its own (TIPCAST_INSTANCE
runsh-test, with free ports), so that it never touches the developer's `run`
instance or the test services. It builds and runs build/ (RelWithDebInfo)
only, so the sanitizer pass of the suite skips these tests.
"""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import REPO, SANITIZED, _binary, free_port

RUN_SH = os.path.join(REPO, "scripts", "run.sh")
INSTANCE = "runsh-test"
STATE = os.path.join(REPO, ".state", INSTANCE)
# run.sh checks packages, builds (nothing to do after the suite's build),
# starts the services (initdb on the first run) and seeds the demo.
READY_TIMEOUT_S = 240
# Everything it started is gone this long after it was stopped.
STOPPED_TIMEOUT_S = 40

pytestmark = pytest.mark.skipif(SANITIZED, reason="run.sh builds and runs build/ only; "
                                                  "checked in the normal pass")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for us.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def run_env(ports):
    env = dict(os.environ)
    env.update(TIPCAST_INSTANCE=INSTANCE, TIPCAST_PORT=str(ports["http"]),
               TIPCAST_REDIS_PORT=str(ports["redis"]), TIPCAST_PG_PORT=str(ports["pg"]))
    return env


def free_ports():
    ports = {}
    while len(set(ports.values())) < 3:
        ports = {"http": free_port(), "redis": free_port(), "pg": free_port()}
    return ports


def stop_instance(ports):
    """Stops what a failed test may have left running."""
    subprocess.run(["bash", os.path.join(REPO, "scripts", "services.sh"), "stop", INSTANCE],
                   env=run_env(ports), capture_output=True, timeout=120)


def wait_for_log(path, text, proc, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    with open(path, errors="replace") as f:
        log = f.read()
    pytest.fail(f"run.sh never said {text!r} (exit {proc.poll()}):\n{log[-4000:]}", pytrace=False)


def start_run_sh(ports, log_path, ending):
    """run.sh in a session and process group of its own, as a terminal runs
    a command: for a Ctrl-C, as the pipeline `run.sh 2>&1 | tee LOG`;
    otherwise with its output in LOG. Returns the process to signal."""
    if ending == "ctrl_c_through_tee":
        return subprocess.Popen(["bash", "-c", '"$0" 2>&1 | tee "$1" >/dev/null', RUN_SH, log_path],
                                cwd=REPO, env=run_env(ports), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    with open(log_path, "w") as log:
        return subprocess.Popen([RUN_SH], cwd=REPO, env=run_env(ports), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def assert_all_stopped(ports, tipcastd_pid, log_path):
    deadline = time.monotonic() + STOPPED_TIMEOUT_S
    left = {}
    while time.monotonic() < deadline:
        left = {name: True for name, up in (("tipcastd", alive(tipcastd_pid)),
                                            ("redis", port_open(ports["redis"])),
                                            ("postgresql", port_open(ports["pg"]))) if up}
        if not left:
            return
        time.sleep(0.5)
    guard = os.path.join(STATE, "run-guard.log")
    tail = open(guard).read()[-2000:] if os.path.exists(guard) else "(no guard log)"
    pytest.fail(f"still running {STOPPED_TIMEOUT_S}s after run.sh ended: {sorted(left)}\n"
                f"--- run.sh output ---\n{open(log_path, errors='replace').read()[-3000:]}\n"
                f"--- guard log ---\n{tail}", pytrace=False)


def tipcastd_pid_of_run():
    with open(os.path.join(STATE, "tipcastd.pid")) as f:
        return int(f.read().strip())


@pytest.mark.parametrize("ending", ["ctrl_c_through_tee", "sigkill"])
def test_whatever_ends_run_sh_stops_what_it_started(tmp_path, ending):
    ports = free_ports()
    log_path = str(tmp_path / "run.log")
    open(log_path, "w").close()
    proc = start_run_sh(ports, log_path, ending)
    try:
        wait_for_log(log_path, "demo ready", proc, READY_TIMEOUT_S)
        pid = tipcastd_pid_of_run()
        assert alive(pid)
        assert port_open(ports["http"]) and port_open(ports["redis"]) and port_open(ports["pg"])
        if ending == "ctrl_c_through_tee":
            # The terminal's Ctrl-C: SIGINT to the whole pipeline. tee dies
            # of it at once, so run.sh's every later write meets a closed pipe.
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOPPED_TIMEOUT_S)
        assert_all_stopped(ports, pid, log_path)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stop_instance(ports)


def test_port_in_use_is_said_first(tmp_path):
    ports = free_ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["http"]))
        busy.listen()
        out = subprocess.run([RUN_SH], cwd=REPO, env=run_env(ports), stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    first = (out.stderr + out.stdout).strip().splitlines()[0]
    assert first == (f"run.sh: error: port {ports['http']} is in use (something listens on "
                     f"127.0.0.1:{ports['http']}); set TIPCAST_PORT to a free port"), out
    # Nothing was started.
    assert not port_open(ports["redis"]) and not port_open(ports["pg"])


def test_tipcastd_says_port_in_use_before_anything_else(server):
    """tipcastd itself, started by hand on a taken port: one plain line,
    before it reads the schema or the catalog."""
    srv = server()
    out = subprocess.run([_binary(), "--port", str(srv.port), "--listen-addr", "127.0.0.1",
                          "--jwt-secret", "x" * 32, "--pg", "host=127.0.0.1 port=1 connect_timeout=1"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    assert out.stderr.splitlines()[0] == (
        f"tipcastd: port {srv.port} is in use on 127.0.0.1 (another process listens there); "
        "set TIPCAST_PORT or --port to a free port"), out.stderr


def test_services_reset_empties_the_instance():
    """`services.sh reset`, which scripts/test.sh runs before the suite: an
    earlier run's Redis keys and rows are gone, and the servers still run."""
    ports = free_ports()
    env = run_env(ports)
    services = os.path.join(REPO, "scripts", "services.sh")
    pg = f"host=127.0.0.1 port={ports['pg']} user=postgres dbname=tipcast"

    def sh(*args):
        return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=180)

    try:
        assert sh("bash", services, "start", INSTANCE).returncode == 0
        assert sh("redis-cli", "-p", str(ports["redis"]), "SET", "left:behind", "1").stdout.strip() == "OK"
        out = sh("psql", pg, "-XAtc", "CREATE TABLE left_behind (x int); INSERT INTO left_behind VALUES (1)")
        assert out.returncode == 0, out.stderr
        out = sh("bash", services, "reset", INSTANCE)
        assert out.returncode == 0, out.stderr
        assert sh("redis-cli", "-p", str(ports["redis"]), "DBSIZE").stdout.strip() == "0"
        out = sh("psql", pg, "-XAtc", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert (out.returncode, out.stdout.strip()) == (0, "0"), out.stderr
    finally:
        stop_instance(ports)
