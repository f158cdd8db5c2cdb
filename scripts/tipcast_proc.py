"""tipcast_proc.py - starts a tipcastd (or any child process) with its output in files, waits until it answers HTTP, stops it, and reads its RSS and CPU from /proc; shared by the tests (tests/conftest.py) and the benchmark (bench/).

Standard library only. The callers decide what a failure means: wait_http
raises NotReady, and the tests turn that into pytest.fail while the benchmark
stops the run.
"""

import http.client
import os
import signal
import socket
import subprocess
import time

STOP_TIMEOUT_S = 10


def tipcastd_argv(binary, settings, extra=()):
    """[binary, --name=value ...] from a dict of settings (python names are
    spelt with dashes: max_connections -> --max-connections); a value of
    None leaves its flag out. extra: raw arguments appended as they are."""
    args = [binary]
    for name, value in settings.items():
        if value is None:
            continue
        args.append(f"--{name.replace('_', '-')}={value}")
    args.extend(extra)
    return args


def http_status(port, path, timeout=2.0, host="127.0.0.1"):
    """The status code of a plain HTTP GET of path; raises OSError or
    http.client.HTTPException when nothing answers."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def port_open(port, timeout=2.0, host="127.0.0.1"):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(check, timeout, alive=lambda: True, interval=0.1):
    """Calls check() until it is true, while alive() is; "ok", "exited"
    (alive() turned false first) or "timeout" after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            return "exited"
        if check():
            return "ok"
        time.sleep(interval)
    return "timeout"


def stop_popen(proc, timeout=STOP_TIMEOUT_S):
    """SIGTERM, then waits up to timeout seconds, then SIGKILL. Returns the
    exit code, or None when the process had to be killed."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def _proc_file(pid, name):
    try:
        with open(f"/proc/{pid}/{name}") as f:
            return f.read()
    except OSError:
        return None


def rss_kb(pid):
    """VmRSS of a process in KiB (None when it is gone)."""
    text = _proc_file(pid, "status")
    for line in (text or "").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def _stat_fields(pid):
    """/proc/PID/stat from field 3 (state) on, or None when the process is
    gone. The command name (field 2) may hold spaces: split after its ')'."""
    text = _proc_file(pid, "stat")
    return text[text.rindex(")") + 2:].split() if text else None


def cpu_s(pid):
    """User plus system CPU seconds a process has used (None when it is gone)."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK") if f else None


def tree_cpu_s(pid):
    """CPU seconds of a process and its children: its own, the children it
    has waited for, and those still running (None when it is gone). For a
    server that forks a process per connection (PostgreSQL)."""
    f = _stat_fields(pid)
    if not f:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(int(x) for x in f[11:15]) / tick
    return total + sum(cpu_s(k) or 0.0 for k in child_pids(pid))


def child_pids(pid):
    """The pids whose parent is pid."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat_fields(entry)
            if f and int(f[1]) == pid:
                kids.append(int(entry))
    return sorted(kids)


def pid_alive(pid):
    """True while process pid exists and is not a zombie (any process, not
    only a child)."""
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z"


class NotReady(Exception):
    """wait_http gave up: exited is True when the process ended (returncode
    says how); otherwise last says what the last probe got."""

    def __init__(self, exited, returncode=None, last=None):
        super().__init__(f"exited with {returncode}" if exited else f"not ready (last: {last})")
        self.exited = exited
        self.returncode = returncode
        self.last = last


def wait_http(path, port=None, timeout=10.0, alive=lambda: True, probe=None, interval=0.05,
              returncode=lambda: None):
    """Waits until GET path answers 200 while alive() holds. probe(path)
    returns a status code (default: plain HTTP to 127.0.0.1:port). Raises
    NotReady when alive() turns false (returncode() says how it ended) or
    timeout seconds pass."""
    if probe is None:
        def probe(p):
            return http_status(port, p, timeout=2.0)
    last = None

    def answered():
        nonlocal last
        try:
            status = probe(path)
        except (OSError, AssertionError, http.client.HTTPException) as e:
            last = repr(e)
            return False
        last = f"HTTP {status}"
        return status == 200

    outcome = wait_for(answered, timeout, alive, interval)
    if outcome == "exited":
        raise NotReady(True, returncode=returncode())
    if outcome == "timeout":
        raise NotReady(False, last=last)


class Process:
    """One child process (a tipcastd) whose stdout and stderr go to files.

    stderr_path None sends stderr to the stdout file; append=True adds to
    the files instead of truncating them."""

    def __init__(self, args, stdout_path, stderr_path=None, append=False, env=None):
        self.args = list(args)
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path or stdout_path
        self.returncode = None
        mode = "ab" if append else "wb"
        self._out = open(stdout_path, mode)
        self._err = open(stderr_path, mode) if stderr_path else None
        self.proc = subprocess.Popen(self.args, stdout=self._out,
                                     stderr=self._err or subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_http(self, path, port=None, timeout=10.0, probe=None, interval=0.05):
        """wait_http (below) while this process lives."""
        wait_http(path, port, timeout, self.alive, probe, interval, lambda: self.proc.returncode)

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM, then waits; returns the exit code (None if it hung and
        had to be killed)."""
        if self.returncode is not None:
            return self.returncode
        self.returncode = stop_popen(self.proc, timeout)
        self._out.close()
        if self._err:
            self._err.close()
        return self.returncode

    def rss_kb(self):
        return rss_kb(self.pid)

    def cpu_s(self):
        return cpu_s(self.pid)
