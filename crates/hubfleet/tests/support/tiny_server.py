# A stand-in single-user server for tests of the hub's own behaviour: it answers the hub's
# readiness probe (`<prefix>api`), and every other GET by posting activity to the hub's API
# (`JUPYTERHUB_ACTIVITY_URL`, which names the address servers reach the hub at) and saying
# whether the hub answered: 200 when it did with 2xx, 502 otherwise. It listens after
# TINY_SERVER_DELAY seconds (default 0).
import datetime
import http.server
import json
import os
import time
import urllib.error
import urllib.request

SERVICE_URL = os.environ["JUPYTERHUB_SERVICE_URL"]
PORT = int(SERVICE_URL.rsplit(":", 1)[1].split("/")[0])
TOKEN = os.environ["JUPYTERHUB_API_TOKEN"]
ACTIVITY_URL = os.environ["JUPYTERHUB_ACTIVITY_URL"]
SERVER_NAME = os.environ.get("JUPYTERHUB_SERVER_NAME", "")


def post_activity():
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    body = json.dumps(
        {"last_activity": now, "servers": {SERVER_NAME: {"last_activity": now}}}
    ).encode()
    request = urllib.request.Request(
        ACTIVITY_URL,
        data=body,
        method="POST",
        headers={"Authorization": "token " + TOKEN, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?")[0].endswith("/api"):
            return self.reply(200, b"{}")
        status = post_activity()
        ok = 200 <= status < 300
        self.reply(200 if ok else 502, f"hub answered {status} at {ACTIVITY_URL}".encode())

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


# A slower start, for tests that need one in flight.
time.sleep(float(os.environ.get("TINY_SERVER_DELAY", "0")))
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
