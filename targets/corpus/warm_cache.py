"""A cache that fills during the first few hundred requests, then stops growing.

Per request: `GET /?i=N` looks up product N modulo 600 in a module-level dict, computing and
storing a ~1 KB description on a miss. There are only 600 products: the dict fills over the first
600 requests (part warm-up, part measured) and stays that size, a plateau, not a leak.

Expected verdict: no-leak
"""

from flask import Flask, request

app = Flask(__name__)
_products: dict[int, str] = {}
PRODUCTS = 600


@app.route("/")
def index() -> str:
    product = int(request.args.get("i", "0")) % PRODUCTS
    if product not in _products:
        _products[product] = f"product {product}: " + "description " * 80
    return _products[product][:30]
