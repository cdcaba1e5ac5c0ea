"""A module imported lazily, on the first request that needs it.

Per request: `GET /?i=N` formats a small XML document with `xml.dom.minidom`, imported inside the
view. The first call loads the module (a one-time cost of a few hundred KB); later calls find it
in `sys.modules`. One step at the start, then flat.

Expected verdict: no-leak
"""

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def index() -> str:
    import xml.dom.minidom

    document = xml.dom.minidom.parseString(f"<order id='{request.args.get('i', '0')}'/>")
    return document.documentElement.getAttribute("id")
