"""A Flask app through nginx: JSON, a form upload with a file, cookies, a redirect."""
import hashlib
import os

import pytest
import requests

from helpers.nginx import proxy_location, uwsgi_location

pytest.importorskip("flask")


@pytest.fixture(params=["uwsgi_pass", "proxy_pass"])
def url(request, wsgid, nginx):
    d = wsgid("flaskapp", threads=4)
    loc = uwsgi_location if request.param == "uwsgi_pass" else proxy_location
    return nginx(loc(d.unix)).url


def test_flask_json(url):
    r = requests.get(url + "/json")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"ok": True, "numbers": [1, 2, 3], "group": "site"}


def test_flask_form_upload(url):
    data = os.urandom(300000)
    r = requests.post(url + "/upload", data={"title": "a file"},
                      files={"file": ("blob.bin", data, "application/octet-stream")})
    assert r.status_code == 200
    assert r.json() == {"title": "a file", "filename": "blob.bin", "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()}


def test_flask_cookies(url):
    with requests.Session() as s:
        r = s.get(url + "/cookie/set?v=chocolate")
        assert r.status_code == 200
        assert "flavour=chocolate" in r.headers["Set-Cookie"]
        assert s.get(url + "/cookie/get").json() == {"flavour": "chocolate"}
    assert requests.get(url + "/cookie/get").json() == {"flavour": None}


def test_flask_redirect(url):
    r = requests.get(url + "/redirect", allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].endswith("/json")
    r = requests.get(url + "/redirect")
    assert r.status_code == 200
    assert r.json()["ok"] is True
    assert r.history and r.history[0].status_code == 302


def test_flask_404(url):
    assert requests.get(url + "/nope").status_code == 404
