"""Helpers of the e2e suite, one module per job: procs (processes, ports, waiting), config
(writing wsgid configs), daemon (the wsgid under test), nginx (nginx in a temp dir), apache,
haproxy and caddy (those proxies in a temp dir, on the common base in proxy), clients (raw
socket, HTTP and uwsgi clients). The fixtures are in ../conftest.py."""
