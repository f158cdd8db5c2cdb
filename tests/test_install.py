"""cmake --install: the binaries, the web page, the example config, the docs
and the systemd unit land where docs/operations.md says, and the unit passes
`systemd-analyze verify`.

What verify checks here (offline, no systemd running, --man=no): that every
directive of the unit parses (an unknown key or a bad value is reported as
"tipcastd.service:LINE: ..."), that its dependencies load, and that
ExecStart names an executable file. Its exit status is 0 for most parse
problems, so the test also fails on any line of its output that names the
unit. Whether the sandbox options let tipcastd run can only be seen under a
real systemd; that is not tested here."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO, TEST_SECRET, _binary

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
UNIT = os.path.join("lib", "systemd", "system", "tipcastd.service")


def build_dir():
    d = os.path.dirname(os.path.dirname(_binary()))
    assert os.path.exists(os.path.join(d, "CMakeCache.txt")), f"{d} is not a CMake build tree"
    return d


def install(prefix, destdir=None):
    env = dict(os.environ)
    if destdir:
        env["DESTDIR"] = str(destdir)
    out = subprocess.run(["cmake", "--install", build_dir(), "--prefix", str(prefix)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def verify(unit_path):
    """(ok, output) of systemd-analyze verify on one unit file."""
    env = dict(os.environ, SYSTEMD_LOG_LEVEL="notice", SYSTEMD_PAGER="")
    out = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    complaints = [l for l in text.splitlines() if "tipcastd.service" in l or str(unit_path) in l]
    return out.returncode == 0 and not complaints, text


def test_install_into_destdir(tmp_path):
    root = tmp_path / "root"
    install("/usr/local", destdir=root)
    base = root / "usr" / "local"
    for exe in ("bin/tipcastd", "bin/tipcast-token"):
        assert os.access(base / exe, os.X_OK), exe
    for f in ("share/tipcast/web/index.html", "share/tipcast/web/app.js", "share/tipcast/web/style.css",
              "share/tipcast/web/dashboard.html", "share/tipcast/web/overlay-alerts.html",
              "share/tipcast/sdk/tipcast.js", "share/tipcast/sdk/msgpack.js", "bin/tipcast",
              "share/doc/tipcast/tipcastd.conf.example", "share/doc/tipcast/operations.md", UNIT):
        assert (base / f).is_file(), f
    unit = (base / UNIT).read_text()
    # The unit names the binary where it will be, not inside DESTDIR.
    assert "\nExecStart=/usr/local/bin/tipcastd --config /etc/tipcast/tipcastd.conf\n" in unit, unit
    assert str(root) not in unit
    with open(os.path.join(REPO, "docs", "tipcastd.conf.example")) as f:
        assert (base / "share/doc/tipcast/tipcastd.conf.example").read_text() == f.read()
    # The installed binary runs and accepts the installed example.
    v = subprocess.run([base / "bin/tipcastd", "--version"], capture_output=True, text=True, timeout=10)
    assert v.returncode == 0 and v.stdout.startswith("tipcastd "), v.stdout + v.stderr
    c = subprocess.run([base / "bin/tipcastd", "--config", base / "share/doc/tipcast/tipcastd.conf.example",
                        "--check-config"], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, TIPCAST_JWT_SECRET=TEST_SECRET))
    assert c.returncode == 0, c.stdout + c.stderr


@pytest.mark.skipif(not os.access(SYSTEMD_ANALYZE, os.X_OK), reason="no systemd-analyze")
def test_unit_verifies(tmp_path):
    # Installed with the prefix itself (no DESTDIR), so that ExecStart names
    # a binary that exists.
    prefix = tmp_path / "usr"
    install(prefix)
    unit = prefix / UNIT
    text = unit.read_text()
    assert f"\nExecStart={prefix}/bin/tipcastd --config /etc/tipcast/tipcastd.conf\n" in text
    for line in ("Type=simple", "DynamicUser=yes", "Restart=on-failure", "KillSignal=SIGTERM",
                 "LimitNOFILE=65536", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "CapabilityBoundingSet=", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes"):
        assert f"\n{line}\n" in text, line
    ok, out = verify(unit)
    assert ok, out

    # The check itself catches a bad unit: a value that does not parse, and
    # an ExecStart that is not there.
    for bad_line, good_line in (("Restart=sometimes", "Restart=on-failure"),
                                (f"ExecStart={tmp_path}/nope/tipcastd", f"ExecStart={prefix}/bin/tipcastd")):
        d = tmp_path / f"bad{len(bad_line)}"
        d.mkdir()
        bad = d / "tipcastd.service"
        assert good_line in text
        bad.write_text(text.replace(good_line, bad_line, 1))
        ok, out = verify(bad)
        assert not ok, f"verify accepted a unit with {bad_line}:\n{out}"
    shutil.rmtree(prefix)
