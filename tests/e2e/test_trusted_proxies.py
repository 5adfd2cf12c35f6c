"""trusted-proxies (issue #14, part 3): from a trusted peer, X-Forwarded-For / -Proto / -Host and
RFC 7239 Forwarded give REMOTE_ADDR, wsgi.url_scheme and the host (environ and access log); from
any other peer they are ignored, or stripped with strip-forwarded-headers."""
import json
import subprocess

import requests

from helpers.clients import request
from helpers.config import app
from helpers.daemon import WSGID_BIN
from helpers.nginx import proxy_location


def env_of(r):
    assert r.status == 200, r
    return json.loads(r.body)


def test_behind_nginx_proxy_pass(wsgid, nginx):
    """nginx on the unix socket (trusted: unix) passes the client, the scheme and the host; a
    client's own X-Forwarded-For is not believed past nginx's entry."""
    d = wsgid("environ", trusted_proxies=["unix"])
    ng = nginx(proxy_location(d.unix, """
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host shop.example;"""))
    r = requests.get(ng.url + "/x?y=1", headers={"X-Forwarded-For": "6.6.6.6"})
    e = r.json()
    assert e["REMOTE_ADDR"] == "127.0.0.1", "the address nginx saw, not the client's claim"
    assert "REMOTE_PORT" not in e
    assert e["wsgi.url_scheme"] == "https" and e["HTTPS"] == "on"
    assert e["HTTP_HOST"] == "shop.example" and e["SERVER_NAME"] == "shop.example"
    assert e["SERVER_PORT"] == "443"
    assert e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.1"
    # The access log names the client too.
    line = d.wait_log(r'"GET /x\?y=1 HTTP/1.1"')
    assert line.startswith("127.0.0.1 - - ["), line


def test_trusted_tcp_peer_forwarded_and_xff(wsgid):
    d = wsgid("environ", trusted_proxies=["127.0.0.0/8", "::1"])
    e = env_of(request(d.tcp, path="/", headers={
        "Forwarded": 'for=192.0.2.60;proto=https;host="shop.example:8443", for=127.0.0.1'}))
    assert e["REMOTE_ADDR"] == "192.0.2.60"
    assert e["wsgi.url_scheme"] == "https"
    assert e["HTTP_HOST"] == "shop.example:8443" and e["SERVER_PORT"] == "8443"
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.5",
                                                 "X-Forwarded-Proto": "http"}))
    assert e["REMOTE_ADDR"] == "203.0.113.7" and e["wsgi.url_scheme"] == "http"
    # Garbage in the chain: nothing is believed, the peer's address stays.
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "evil, 127.0.0.5"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    d.wait_log(r"^203\.0\.113\.7 - - \[")


def test_untrusted_peer_ignored_or_stripped(wsgid):
    d = wsgid("environ", trusted_proxies=["10.0.0.0/8"])
    e = env_of(request(d.tcp, path="/", headers={"X-Forwarded-For": "6.6.6.6",
                                                 "X-Forwarded-Proto": "https",
                                                 "Forwarded": "for=6.6.6.6"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1" and e["wsgi.url_scheme"] == "http"
    assert e["HTTP_X_FORWARDED_FOR"] == "6.6.6.6" and e["HTTP_FORWARDED"] == "for=6.6.6.6"
    d2 = wsgid("environ", group="site2", trusted_proxies=["10.0.0.0/8"],
               strip_forwarded_headers=True)
    e = env_of(request(d2.tcp, path="/", headers={"X-Forwarded-For": "6.6.6.6",
                                                  "X-Forwarded-Host": "evil.example",
                                                  "Forwarded": "for=6.6.6.6", "X-Other": "1"}))
    assert e["REMOTE_ADDR"] == "127.0.0.1"
    assert not [k for k in e if "FORWARDED" in k], sorted(e)
    assert e["HTTP_X_OTHER"] == "1"


def test_trusted_proxies_config_errors(tmp):
    bad = tmp / "bad.yaml"
    bad.write_text("groups:\n  a:\n    app: %s\n    listen: 127.0.0.1:9\n"
                   "    trusted-proxies: [unix, 10.0.0.0/33]\n" % app("hello"))
    r = subprocess.run([str(WSGID_BIN), "--check", "-c", str(bad)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert ("bad.yaml:5:29: groups.a.trusted-proxies: '10.0.0.0/33' is not an address range"
            in r.stderr), r.stderr
