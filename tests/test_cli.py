"""tipcastd's command line outside of serving: --version, a mistyped
setting answered with the setting it was probably meant to be (flag and
config file), and --check-config."""

import os
import re
import subprocess

from conftest import REPO, TEST_SECRET, _binary

EXAMPLE = os.path.join(REPO, "docs", "tipcastd.conf.example")


def run(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TIPCAST_")}
    e.update(env or {})
    return subprocess.run([_binary(), *args], capture_output=True, text=True, timeout=10, env=e)


def test_version():
    p = run("--version")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    # "tipcastd 0.1.0" and, built from a git checkout, "(commit abcdef123456)".
    assert re.fullmatch(r"tipcastd \d+\.\d+\.\d+( \(commit [0-9a-f]{7,40}(-dirty)?\))?", lines[0]), lines
    names = [l.split()[0] for l in lines[1:]]
    for lib in ("libwebsockets", "hiredis", "libpq"):
        assert lib in names, lines
    # --version wins over everything else, even a bad setting.
    assert run("--nope", "--version").stdout == p.stdout


def test_token_version():
    token = os.path.join(os.path.dirname(_binary()), "tipcast-token")
    p = subprocess.run([token, "--version"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("tipcast-token "), p.stdout + p.stderr


def test_did_you_mean_flag():
    p = run("--prot", "8080")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == 'tipcastd: unknown setting "prot" (did you mean "port"?)', p.stderr
    p = run("--zzzz=1")
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == 'tipcastd: unknown setting "zzzz"', p.stderr


def test_did_you_mean_config_file(tmp_path):
    conf = tmp_path / "t.conf"
    conf.write_text("port = 8080\n# a comment\nmax-conections = 10\n")
    p = run("--config", str(conf), "--check-config", env={"TIPCAST_JWT_SECRET": TEST_SECRET})
    assert p.returncode == 2
    assert p.stderr.splitlines()[0] == (f'tipcastd: {conf}:3: unknown setting "max-conections" '
                                        f'(did you mean "max-connections"?)'), p.stderr


def test_check_config_example():
    p = run("--config", EXAMPLE, "--check-config", env={"TIPCAST_JWT_SECRET": TEST_SECRET})
    assert p.returncode == 0, p.stderr
    assert p.stdout == "tipcastd: configuration OK\n"
    # Without the secret, which the example leaves out, the check fails.
    p = run("--config", EXAMPLE, "--check-config")
    assert p.returncode == 2 and "jwt-secret is required" in p.stderr, p.stderr


def test_bad_redis_cluster_seeds_refused_at_start():
    """A malformed redis-cluster seed list is refused before anything starts
    (exit 2, the seed named), by --check-config too; a good one passes."""
    for seeds in ("nohost", "h:0", "h:70000", "a:1,,b:2"):
        p = run(f"--redis-cluster={seeds}", f"--jwt-secret={TEST_SECRET}", "--check-config")
        assert p.returncode == 2, (seeds, p.stderr)
        assert p.stderr.startswith("tipcastd: redis-cluster: a seed is host:port"), p.stderr
    p = run("--redis-cluster=127.0.0.1:7000,redis-2:7001", f"--jwt-secret={TEST_SECRET}", "--check-config")
    assert p.returncode == 0, p.stderr
