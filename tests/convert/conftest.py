"""The convert tests reuse the end-to-end fixtures (tests/e2e/conftest.py: tmp, wsgid, nginx,
apache, with their teardown checks) and helpers."""
import importlib.util
import sys
from pathlib import Path

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))

_spec = importlib.util.spec_from_file_location("e2e_conftest", E2E / "conftest.py")
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)

tmp = _e2e.tmp
wsgid = _e2e.wsgid
nginx = _e2e.nginx
apache = _e2e.apache
