"""The README's "Many hosts" snippets are the configs the fleet test runs (no namespaces needed):
the HAProxy frontend and backend, and nginx's upstream and location, line for line (indentation
aside)."""
import re

from helpers.config import REPO
from test_fleet import HAPROXY_BACKEND, HAPROXY_FRONTEND, NGINX_LOCATION, NGINX_UPSTREAM


def blocks(lang):
    text = (REPO / "README.md").read_text()
    section = text[text.index("\n## Many hosts\n"):]
    section = section[:section.index("\n## ", 1)]
    return [[line.strip() for line in b.splitlines() if line.strip()]
            for b in re.findall(r"```%s\n(.*?)```" % lang, section, re.S)]


def contains(block, snippet):
    lines = [line.strip() for line in snippet.splitlines() if line.strip()]
    return any(block[i:i + len(lines)] == lines for i in range(len(block)))


def test_haproxy_snippet_is_the_tested_one():
    (block,) = blocks("haproxy")
    assert contains(block, HAPROXY_FRONTEND) and contains(block, HAPROXY_BACKEND)


def test_nginx_snippet_is_the_tested_one():
    (block,) = blocks("nginx")
    assert contains(block, NGINX_UPSTREAM) and contains(block, NGINX_LOCATION)
    assert "listen 10.77.0.10:8081;" in block
