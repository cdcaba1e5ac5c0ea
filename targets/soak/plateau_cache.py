"""A bounded cache that fills during the first 300 requests and then never grows again.

Per request: `GET /` renders a ~2 KB page for the request's sequence number and keeps it in a
module-level dict while the dict holds fewer than 300 pages; after that it only reads from it.
Memory grows early (warm-up and the first moments of the run) and then stays flat: a plateau,
which a soak must not call a leak.

Expected verdict: no-leak
"""

from itertools import count

from flask import Flask

CACHE_SIZE = 300

app = Flask(__name__)
_pages: dict[int, str] = {}
_sequence = count()


@app.route("/")
def index() -> str:
    number = next(_sequence)
    if len(_pages) < CACHE_SIZE:
        _pages[number] = f"<p>page {number}</p>" + "." * 2048
    return _pages[number % len(_pages)] if _pages else ""
