"""The documents say what the code does: the settings reference in
docs/operations.md is tipcastd's own --help, word for word."""

import os
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
