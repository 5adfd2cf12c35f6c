"""The fleet test (tests/fleet/test_fleet.py) reuses the e2e helpers (helpers.daemon's Wsgid,
helpers.haproxy's HAProxy, helpers.nginx's Nginx): tests/e2e goes on the path. Its summary table
is printed at the end of the run whatever pytest's options (-q, without -s), and written to
$WSGID_FLEET_SUMMARY when that is set."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
sys.path.insert(0, str(HERE))

SUMMARIES = []      # lines the test adds


def pytest_terminal_summary(terminalreporter):
    for rep in terminalreporter.stats.get("skipped", []):
        if isinstance(rep.longrepr, tuple):
            reason = rep.longrepr[2].replace("Skipped: ", "", 1)
            terminalreporter.write_line("fleet test skipped: " + reason, yellow=True)
    if SUMMARIES:
        terminalreporter.section("fleet summary")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
