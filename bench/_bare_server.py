"""The app on gevent's WSGI server exactly as `memsoak serve` runs it, minus the agent: the
baseline the agent's own cost is measured against. Prints the same JSON ready line."""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import sys  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

from memsoak.hosting import listen, load_app  # noqa: E402

if __name__ == "__main__":
    app = load_app(sys.argv[1], None)
    sock = listen("127.0.0.1", 0)
    server = WSGIServer(sock, app, log=None, error_log=sys.stderr)
    server.start()
    print(json.dumps({"url": f"http://127.0.0.1:{sock.getsockname()[1]}"}), flush=True)
    server.serve_forever()
