"""A Flask app: JSON, a form upload with a file, cookies and a redirect."""
import hashlib

from flask import Flask, jsonify, make_response, redirect, request

app = Flask(__name__)


@app.route("/json")
def json_view():
    return jsonify(ok=True, numbers=[1, 2, 3], group=request.environ.get("wsgid.process_group"))


@app.route("/upload", methods=["POST"])
def upload():
    f = request.files["file"]
    data = f.read()
    return jsonify(title=request.form.get("title"), filename=f.filename, size=len(data),
                   sha256=hashlib.sha256(data).hexdigest())


@app.route("/cookie/set")
def cookie_set():
    resp = make_response("set\n")
    resp.set_cookie("flavour", request.args.get("v", "oatmeal"))
    return resp


@app.route("/cookie/get")
def cookie_get():
    return jsonify(flavour=request.cookies.get("flavour"))


@app.route("/redirect")
def go():
    return redirect("/json")


application = app
