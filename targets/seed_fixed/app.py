"""The seed app's fixed twin: the same route and the same per-request work, nothing kept.

Per request: `GET /` builds the same 5,000-reference list as the seed and lets it go.

Expected verdict: no-leak
"""

from flask import Flask

from targets.seed_fixed.fetchuserdata import user_data

app = Flask(__name__)
users_list: list[tuple[str, str, str]] = []


@app.route("/")
def index() -> str:
    return f"Total users found {user_data(users_list)}"
