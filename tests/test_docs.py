"""The documents say what the code does: the settings reference in
docs/operations.md is tipcastd's own --help, word for word; docs/mobile.md
names only real settings, and its tables of error codes and close codes are
the server's."""

import os
import re
import subprocess

from conftest import REPO, _binary


def test_settings_reference_is_the_help_text():
    help_text = subprocess.run([_binary(), "--help"], capture_output=True, text=True, timeout=10).stdout
    with open(os.path.join(REPO, "docs", "operations.md")) as f:
        doc = f.read()
    start = doc.index("```\nUsage: tipcastd") + 4
    end = doc.index("```", start)
    assert doc[start:end] == help_text, ("docs/operations.md's Settings differ from tipcastd --help; "
                                         "paste the help text in again")


def _mobile_doc():
    with open(os.path.join(REPO, "docs", "mobile.md")) as f:
        return f.read()


def _prose(doc):
    """The text outside fenced code blocks (code shows requests, not names)."""
    return "".join(part for i, part in enumerate(doc.split("```")) if i % 2 == 0)


def _table_first_cells(doc, heading):
    """The first cell of each row of the first table after heading."""
    rest = doc[doc.index(heading):]
    rows = []
    for line in rest.splitlines()[1:]:
        if line.startswith("|"):
            rows.append(line.split("|")[1].strip())
        elif rows:
            break
    return [r for r in rows if r and not set(r) <= set("-: ")][1:]


def test_mobile_settings_are_tipcastd_settings():
    """Every setting docs/mobile.md names (`kebab-case` in its prose) is one
    of tipcastd's, as its --help lists them."""
    help_text = subprocess.run([_binary(), "--help"], capture_output=True, text=True, timeout=10).stdout
    settings = set(re.findall(r"^  --([a-z0-9-]+)=", help_text, re.M))
    assert len(settings) > 40, help_text
    named = set(re.findall(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)+)`", _prose(_mobile_doc())))
    assert named, "docs/mobile.md names no setting"
    assert named <= settings, f"docs/mobile.md names settings tipcastd does not have: {sorted(named - settings)}"


def test_mobile_error_table_is_the_servers():
    """docs/mobile.md's "what the app does" table has a row for every error
    code of the server's table (core/errors.c) and for nothing else, and
    every code its examples show is one of them."""
    with open(os.path.join(REPO, "core", "errors.c")) as f:
        codes = set(re.findall(r'\] = \{"([a-z_]+)"', f.read()))
    assert len(codes) > 20, codes
    doc = _mobile_doc()
    rows = [c.strip("`") for c in _table_first_cells(doc, "## 8. Errors: what the app does")]
    assert len(rows) == len(set(rows)), rows
    assert set(rows) == codes, (f"missing: {sorted(codes - set(rows))}; "
                                f"not the server's: {sorted(set(rows) - codes)}")
    shown = set(re.findall(r'"code":\s*"([a-z_]+)"', doc))
    assert shown and shown <= codes, sorted(shown - codes)


def test_mobile_close_codes_are_the_protocols():
    """docs/mobile.md's close-code table covers every close code of
    docs/protocol.md, plus 1006 (a library's code for a lost connection)."""
    with open(os.path.join(REPO, "docs", "protocol.md")) as f:
        protocol = set(_table_first_cells(f.read(), "## Close codes"))
    assert {"1000", "4003", "4029"} <= protocol, protocol
    mobile = set(_table_first_cells(_mobile_doc(), "### Close codes: reconnect or not"))
    assert mobile == protocol | {"1006"}, (f"missing: {sorted(protocol - mobile)}; "
                                          f"not the protocol's: {sorted(mobile - protocol - {'1006'})}")
