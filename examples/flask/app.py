"""A small Flask application served by wsgid (see examples/flask/wsgid.yaml).

    ./dev build && mkdir -p run && build/wsgid -c examples/flask/wsgid.yaml
    curl http://127.0.0.1:8081/
"""
from flask import Flask, jsonify, redirect, request, url_for

app = Flask(__name__)


@app.route("/")
def index():
    return jsonify(message="Hello from Flask on wsgid",
                   process_group=request.environ.get("wsgid.process_group"),
                   request_id=request.environ.get("wsgid.request_id"))


@app.route("/hello/<name>")
def hello(name):
    return "Hello, %s!\n" % name


@app.route("/upload", methods=["POST"])
def upload():
    files = {name: len(f.read()) for name, f in request.files.items()}
    return jsonify(form=request.form.to_dict(), files=files)


@app.route("/old")
def old():
    return redirect(url_for("index"))


# wsgid looks for "application" by default.
application = app
