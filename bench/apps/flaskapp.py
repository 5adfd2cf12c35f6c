"""Flask hello JSON: what a small real framework adds on top of the server."""
from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/")
def index():
    return jsonify(message="Hello, World!")


application = app
