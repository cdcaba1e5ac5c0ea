"""The LinkedIn School of SRE "troubleshooting example" app, as in the write-up.

Per request: `GET /` extends the module-level `users_list` with 5,000 references to one constant
tuple (fetchuserdata.py line 6), about 40 KB per request that is never released.

Expected verdict: leak
Planted line: fetchuserdata.py:6
"""

from flask import Flask

from targets.seed_leak.fetchuserdata import user_data

app = Flask(__name__)
users_list: list[tuple[str, str, str]] = []


@app.route("/")
def index() -> str:
    user_data(users_list)
    return f"Total users found {len(users_list)}"
