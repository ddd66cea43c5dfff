"""Admin page at scale: seed N users through the REST API, then time what the admin page asks
for, the way the browser asks for it (login cookie + X-XSRFToken, keep-alive):

  first render: GET /hub/admin, then GET /hub/api/users?offset=0&limit=50&sort=name
                &include_stopped_servers=1 (paginated);
  search:       the same request with name_filter=<text>, as typed in the search box;
  sort:         sort=-last_activity.

Server time is the hub's own access-log duration of each request; the client-side wall time
(same machine, keep-alive) is shown beside it.
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--no-build", action="store_true")
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="hubfleet-bench-admin-")
    port = free_port()
    config = os.path.join(tmp, "hub.yaml")
    with open(config, "w") as f:
        f.write(f"""hub:
  config:
    JupyterHub:
      authenticator_class: dummy
    Authenticator:
      admin_users: [admin]
hubfleet:
  listen: 127.0.0.1:{port}
  data_dir: {tmp}/data
""")
    log_path = os.path.join(tmp, "hub.log")
    log = open(log_path, "w")
    hub = subprocess.Popen([args.binary, "serve", "--config", config], stdout=log, stderr=log,
                           env={**os.environ, "RUST_LOG": "info,hubfleet::access=debug"})
    try:
        wait_port(port)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        cookies = login(conn)
        xsrf = cookies["_xsrf"]
        cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        api_headers = {"Cookie": cookie_header, "X-XSRFToken": xsrf,
                       "Sec-Fetch-Mode": "cors", "Content-Type": "application/json"}

        t0 = time.time()
        names = [f"user-{i:05d}" for i in range(args.users)]
        for start in range(0, len(names), 1000):
            status, body = request(conn, "POST", "/hub/api/users", api_headers,
                                   json.dumps({"usernames": names[start:start + 1000]}))
            assert status == 201, (status, body[:200])
        # Some activity and groups, so sorting and the user models are not trivial.
        for i in range(0, args.users, 97):
            request(conn, "POST", f"/hub/api/users/{names[i]}/activity", api_headers,
                    json.dumps({"last_activity": f"2026-01-{1 + i % 28:02d}T10:00:00.000000Z"}))
        for g in range(20):
            members = names[g * 50:(g + 1) * 50]
            request(conn, "POST", f"/hub/api/groups/group-{g}", api_headers, "")
            request(conn, "POST", f"/hub/api/groups/group-{g}/users", api_headers,
                    json.dumps({"users": members}))
        print(f"seeded {args.users} users, 20 groups in {time.time() - t0:.1f} s", file=sys.stderr)

        page_headers = {"Cookie": cookie_header}
        list_headers = {**api_headers, "Accept": "application/jupyterhub-pagination+json"}
        base = "/hub/api/users?offset=0&limit=50&include_stopped_servers=1"
        cases = [
            ("first render: GET /hub/admin", "/hub/admin", page_headers),
            ("first render: first page of users (sort=name)", base + "&sort=name", list_headers),
            ("search: name_filter=user-12 (111 matches)", base + "&sort=name&name_filter=user-12", list_headers),
            ("search: name_filter=user-09999 (1 match)", base + "&sort=name&name_filter=user-09999", list_headers),
            ("sort: -last_activity", base + "&sort=-last_activity", list_headers),
            ("last page (offset 9950)", base.replace("offset=0", f"offset={args.users - 50}") + "&sort=name", list_headers),
        ]
        # Warm-up, then rounds taking turns.
        for _, path, headers in cases:
            status, body = request(conn, "GET", path, headers)
            assert status == 200, (path, status, body[:300])
        walls = {label: [] for label, _, _ in cases}
        for _ in range(args.rounds):
            for label, path, headers in cases:
                t = time.perf_counter()
                status, _ = request(conn, "GET", path, headers)
                walls[label].append((time.perf_counter() - t) * 1000)
                assert status == 200
        time.sleep(0.5)
        server = server_times(log_path, [path for _, path, _ in cases], args.rounds)
        status, total = request(conn, "GET", base + "&sort=name", list_headers)
        total_users = json.loads(total)["_pagination"]["total"]
        print(f"\nAdmin page with {total_users} users, {args.rounds} rounds, "
              f"hubfleet {version(args.binary)}, SQLite, {os.cpu_count()} cores\n")
        print("| request | server median (ms) | server p95 (ms) | server max (ms) | wall median (ms) |")
        print("|---|---:|---:|---:|---:|")
        for (label, path, _), times in zip(cases, server):
            wall = walls[label]
            print(f"| {label} | {fmt(statistics.median(times))} | {fmt(p95(times))} | "
                  f"{fmt(max(times))} | {fmt(statistics.median(wall))} |")
        first = [a + b for a, b in zip(server[0], server[1])]
        print(f"\nfirst render, page + first users request: median {fmt(statistics.median(first))} ms, "
              f"p95 {fmt(p95(first))} ms, max {fmt(max(first))} ms (target: 300 ms)")
    finally:
        hub.send_signal(signal.SIGTERM)
        hub.wait(timeout=30)


def fmt(x):
    return f"{x:.1f}"


def p95(values):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]


def version(binary):
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    return out or "?"


def server_times(log_path, paths, rounds):
    """Access-log durations of the timed rounds: the log has no query strings, but the rounds
    ask in a fixed order, so the last rounds * len(paths) entries map back by position."""
    pattern = re.compile(r"hubfleet::access: GET (\S+) ([0-9.]+)ms")
    entries = []
    with open(log_path) as f:
        for line in f:
            m = pattern.search(line)
            if m:
                entries.append((m.group(1), float(m.group(2))))
    timed = entries[-rounds * len(paths):]
    assert len(timed) == rounds * len(paths), "access log is missing entries"
    out = [[] for _ in paths]
    for i, (path, ms) in enumerate(timed):
        expected = paths[i % len(paths)].split("?")[0]
        assert path == expected, (i, path, expected)
        out[i % len(paths)].append(ms)
    return out


def request(conn, method, path, headers, body=None):
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data.decode("utf-8", "replace")


def login(conn):
    conn.request("GET", "/hub/login")
    r = conn.getresponse()
    r.read()
    cookies = parse_cookies(r.getheader("Set-Cookie", ""), r.msg.get_all("Set-Cookie") or [])
    form = urllib.parse.urlencode({"username": "admin", "password": "x", "_xsrf": cookies["_xsrf"]})
    conn.request("POST", "/hub/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
    r = conn.getresponse()
    r.read()
    assert r.status in (302, 303), r.status
    cookies.update(parse_cookies("", r.msg.get_all("Set-Cookie") or []))
    return cookies


def parse_cookies(_, headers):
    out = {}
    for h in headers:
        name, _, rest = h.partition("=")
        out[name.strip()] = rest.split(";", 1)[0]
    return out


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    import socket
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("hub did not start")


if __name__ == "__main__":
    main()
