"""The browser the Web UI tests drive: Debian's chromium with Node playwright-core."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.cli.local_stack import REPO

PLAYWRIGHT = REPO / "node_modules" / "playwright-core"


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, else a skip; a failure under REQUIRE_BROWSER=1, so CI cannot pass
    without having run this test."""
    found = shutil.which("chromium")
    missing = [why for why, ok in (
        ("chromium on PATH (apt-get install -y chromium)", found),
        ("node on PATH", shutil.which("node")),
        ("node_modules/playwright-core (run `npm ci` at the repository root)", PLAYWRIGHT.is_dir()),
    ) if not ok]
    if missing:
        (pytest.fail if os.environ.get("REQUIRE_BROWSER") == "1" else pytest.skip)(
            "needs " + " and ".join(missing))
    return found


