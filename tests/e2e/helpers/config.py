"""Writing wsgid configs: the test tree's paths, the test apps, YAML from dicts, and a whole config
from groups."""
import json
import os
import re
from pathlib import Path

from helpers.procs import free_port

E2E = Path(__file__).resolve().parents[1]   # tests/e2e
REPO = E2E.parents[1]
APPS = E2E / "apps"


def app(name):
    """Absolute path of a test app script."""
    return str(APPS / (name + ".py"))


# --- YAML ---------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (_yaml_key(k), _yaml_scalar(x)) for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _yaml_key(k):
    return k if _PLAIN_KEY.match(k) else json.dumps(k)


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts; lists and leaf dicts (env, mounts) in flow style."""
    lines = []
    pad = "  " * indent
    for k, v in obj.items():
        nested = isinstance(v, dict) and v and any(isinstance(x, dict) for x in v.values())
        if isinstance(v, dict) and v and (nested or indent <= 1):
            lines.append("%s%s:" % (pad, _yaml_key(k)))
            lines.append(to_yaml(v, indent + 1))
        else:
            lines.append("%s%s: %s" % (pad, _yaml_key(k), _yaml_scalar(v)))
    return "\n".join(lines)


def group_addrs(tmp, name):
    """The unix socket path and a free 127.0.0.1 address for a group named name."""
    return str(Path(tmp) / (name + ".sock")), ("127.0.0.1", free_port())


def make_config(tmp, groups, **top):
    """A whole config: top-level keys (log, control...) and groups {name: {key: value}}.
    Keys may be written with underscores (limit_request_body); they become dashes."""
    conf = {"log": {"level": "info", "file": "-", "access": "-"}}
    for k, v in top.items():
        conf[k.replace("_", "-")] = v
    conf["groups"] = {}
    for name, g in groups.items():
        conf["groups"][name] = {k.replace("_", "-") if k != "env" else k: v for k, v in g.items()}
        # Run as root, wsgid runs apps as nobody unless a group says otherwise; the tests' apps
        # read and write files in a 0700 temp dir, so they stay root.
        if os.geteuid() == 0:
            conf["groups"][name].setdefault("user", "root")
    return to_yaml(conf) + "\n"
