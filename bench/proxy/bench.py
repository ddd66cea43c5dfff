#!/usr/bin/env python3
"""Proxy benchmark: direct vs nginx vs configurable-http-proxy vs `hubfleet proxy`, in one run.

Everything listens on 127.0.0.1. The backend is an nginx server block answering
`200 "hello, world\\n"`; every proxy forwards to it with keep-alive. Load comes from wrk.

Parts:
  1. HTTP throughput and latency with wrk at several concurrencies, all four side by side.
  2. Idle WebSockets: N upgraded connections held open through CHP and through hubfleet,
     reporting each proxy's resident memory (VmRSS).
  3. Routes: add N routes through each proxy's REST API (add rate), then wrk lookup
     throughput with requests spread over 10 routes and over N routes.
  4. TLS termination at c=32: HTTPS/1.1 with wrk through nginx, CHP and hubfleet, and HTTP/2
     with h2load through nginx and hubfleet.

Prints a Markdown report (also written to --out). Standard library only.
"""

import argparse
import asyncio
import base64
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOKEN = "bench-proxy-token"
BODY = "hello, world\\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open within {timeout}s")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pids):
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def with_children(pid):
    """pid and its direct children (nginx's master and workers)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(x) for x in out.split()]


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Procs:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def start(self, name, cmd, env=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# How nginx proxies in every nginx-as-proxy configuration here (plain and TLS alike).
NGINX_PROXY_LOCATION = """    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
    }"""


def nginx_conf(tmp, name, worker_processes, server_block):
    path = os.path.join(tmp, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"""
worker_processes {worker_processes};
pid {tmp}/{name}.pid;
error_log {tmp}/{name}.error.log warn;
worker_rlimit_nofile 100000;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path {tmp}/{name}-body;
  proxy_temp_path {tmp}/{name}-proxy;
  fastcgi_temp_path {tmp}/{name}-fcgi;
  uwsgi_temp_path {tmp}/{name}-uwsgi;
  scgi_temp_path {tmp}/{name}-scgi;
  {server_block}
}}
""")
    return path


# ---------------------------------------------------------------- wrk

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def wrk(url, conns, duration, script=None, env=None):
    threads = max(1, min(2, conns))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s", "--latency",
           "--timeout", "5s"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        lat[pct] = to_ms(m.group(1)) if m else float("nan")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "errors": errors, "total": total}


# ---------------------------------------------------------------- websockets

async def ws_backend(port):
    """Accept WebSocket upgrades on any path and hold them open, reading until EOF."""
    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            key = re.search(rb"(?i)sec-websocket-key:\s*(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(
                key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            await writer.drain()
            while await reader.read(65536):
                pass
        except Exception:
            pass
        finally:
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)


async def open_websockets(port, n, path="/user/u1/ws", concurrency=200):
    sem = asyncio.Semaphore(concurrency)
    socks = []
    failures = 0

    async def one(i):
        nonlocal failures
        async with sem:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), 10)
                key = base64.b64encode(os.urandom(16))
                writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\n"
                             b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                if not head.startswith(b"HTTP/1.1 101"):
                    failures += 1
                    writer.close()
                    return
                socks.append((reader, writer))
            except Exception:
                failures += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return socks, failures


async def ws_part(name, pid, port, backend_port, n):
    # The backend runs in its own process: each side of n connections needs n descriptors.
    backend = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve-ws",
                                str(backend_port)], stdin=subprocess.DEVNULL)
    try:
        wait_port(backend_port, backend)
        before = rss_mib(pid)
        fds_before = fd_count(pid)
        t0 = time.time()
        socks, failures = await open_websockets(port, n)
        opened = time.time() - t0
        await asyncio.sleep(3)
        # Each held connection still works: a masked ping frame travels through (not answered).
        for _, w in socks[:100]:
            w.write(b"\x89\x80" + os.urandom(4))
        await asyncio.sleep(1)
        held = sum(1 for r, w in socks if not r.at_eof() and not w.is_closing())
        rss = rss_mib(pid)
        fds = fd_count(pid)
        for _, w in socks:
            w.close()
        await asyncio.sleep(3)
        after_close = rss_mib(pid)
        fds_after = fd_count(pid)
    finally:
        backend.terminate()
        backend.wait()
    return {"name": name, "before": before, "rss": rss, "after": after_close, "held": held,
            "failures": failures, "open_s": opened, "fds_before": fds_before, "fds": fds,
            "fds_after": fds_after}


async def serve_ws_forever(port):
    server = await ws_backend(port)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------- routes

async def add_routes(api_port, n, target, conns=16):
    ids = iter(range(n))
    statuses = {}

    async def worker():
        reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
        for i in ids:
            body = json.dumps({"target": target, "user": f"r{i}", "server_name": "",
                               "jupyterhub": True}).encode()
            writer.write(
                f"POST /api/routes/user/r{i} HTTP/1.1\r\nHost: bench\r\n"
                f"Authorization: token {TOKEN}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            statuses[status] = statuses.get(status, 0) + 1
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            elif re.search(rb"(?i)transfer-encoding:\s*chunked", head):
                await reader.readuntil(b"0\r\n\r\n")
        writer.close()

    t0 = time.time()
    await asyncio.gather(*(worker() for _ in range(conns)))
    return time.time() - t0, statuses


def get_all_routes_seconds(api_port):
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/routes",
                                 headers={"Authorization": f"token {TOKEN}"})
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=120) as r:
        n = len(json.loads(r.read()))
    return time.time() - t0, n


LUA = """
local n = tonumber(os.getenv("BENCH_ROUTES") or "10")
local counter = 0
setup = function(thread) thread:set("seed", math.random(1, 1000000)) end
init = function(args) math.randomseed(seed) end
request = function()
  return wrk.format("GET", "/user/r" .. math.random(0, n - 1) .. "/x")
end
"""


# ---------------------------------------------------------------- main

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (f"nproc {os.cpu_count()}, CPU `{cpu}`, memory {mem_kb / 1024 / 1024:.1f} GiB, "
            f"Linux {platform.release()}")


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target/dist/hubfleet"))
    ap.add_argument("--chp", default=os.path.join(HERE, "node_modules/.bin/configurable-http-proxy"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--concurrency", default="1,32,128")
    ap.add_argument("--websockets", type=int, default=10000)
    ap.add_argument("--routes", type=int, default=100000)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: http,ws,routes,tls")
    ap.add_argument("--out")
    ap.add_argument("--serve-ws", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_ws:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        asyncio.run(serve_ws_forever(args.serve_ws))
        return
    skip = set(filter(None, args.skip.split(",")))
    for tool in ("wrk", "nginx", "node"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed (apt-get install wrk nginx-light nodejs)")
    if not os.path.exists(args.chp):
        raise SystemExit(f"{args.chp} missing: run `npm install` in bench/proxy")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A proxied websocket costs the proxy two descriptors; the hard limit caps what fits.
    ws_cap = (hard - 200) // 2
    ws_note = ""
    if args.websockets > ws_cap:
        ws_note = (f" (asked for {args.websockets:,}; this machine's hard limit of {hard:,} open files "
                   f"per process, which root cannot raise here, fits {ws_cap:,} proxied websockets)")
        print(f"[bench] websockets capped at {ws_cap}{ws_note}", file=sys.stderr)
        args.websockets = ws_cap

    tmp = tempfile.mkdtemp(prefix="bench-proxy-")
    procs = Procs(tmp)
    load_start = os.getloadavg()[0]
    report = []
    try:
        ports = {k: free_port() for k in ("backend", "nginx", "chp", "chp_api", "hub", "hub_api",
                                            "ws_backend")}
        backend = f"http://127.0.0.1:{ports['backend']}"
        conf = nginx_conf(tmp, "backend", 1, f"""
  server {{ listen 127.0.0.1:{ports['backend']} backlog=4096;
    location / {{ return 200 "{BODY}"; }} }}""")
        procs.start("backend", ["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"])
        conf = nginx_conf(tmp, "nginx-proxy", "auto", f"""
  upstream backend {{ server 127.0.0.1:{ports['backend']}; keepalive 256; }}
  server {{ listen 127.0.0.1:{ports['nginx']} backlog=4096;
{NGINX_PROXY_LOCATION} }}""")
        nginx_proxy = procs.start("nginx-proxy", ["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"])
        env = {"CONFIGPROXY_AUTH_TOKEN": TOKEN}
        chp = procs.start("chp", [args.chp, "--ip", "127.0.0.1", "--port", str(ports["chp"]),
                                  "--api-ip", "127.0.0.1", "--api-port", str(ports["chp_api"]),
                                  "--default-target", backend, "--log-level", "error"], env)
        hub = procs.start("hubfleet", [args.bin, "proxy", "--ip", "127.0.0.1", "--port",
                                       str(ports["hub"]), "--api-ip", "127.0.0.1", "--api-port",
                                       str(ports["hub_api"]), "--default-target", backend,
                                       "--log-level", "warn"], env)
        for k in ("backend", "nginx", "chp", "chp_api", "hub", "hub_api"):
            wait_port(ports[k])
        targets = [("direct", ports["backend"]), ("nginx", ports["nginx"]),
                   ("CHP", ports["chp"]), ("hubfleet", ports["hub"])]
        chp_version = json.load(open(os.path.join(HERE, "node_modules/configurable-http-proxy/package.json")))["version"]
        nginx_version = version(["sh", "-c", "nginx -v 2>&1"]).replace("nginx version: ", "")
        idle_rss = {"CHP": rss_mib(chp.pid), "hubfleet": rss_mib(hub.pid)}

        if "http" not in skip:
            # Warm-up: a few seconds each, not recorded.
            for name, port in targets:
                wrk(f"http://127.0.0.1:{port}/user/u1/x", 32, 2)
            # Whose CPU time counts per request (the backend's is the same for all, so left out).
            proxy_pids = {"nginx": with_children(nginx_proxy.pid), "CHP": [chp.pid],
                          "hubfleet": [hub.pid]}
            rows = []
            for c in [int(x) for x in args.concurrency.split(",")]:
                runs = {name: [] for name, _ in targets}
                # Rounds interleave the four targets; the round with the median req/s is kept,
                # so a burst of other work on the machine does not decide a cell.
                for rnd in range(args.rounds):
                    for name, port in targets:
                        before = cpu_seconds(proxy_pids.get(name, []))
                        r = wrk(f"http://127.0.0.1:{port}/user/u1/x", c, args.duration)
                        r["cpu_us"] = ((cpu_seconds(proxy_pids.get(name, [])) - before) * 1e6
                                       / max(1, r["total"]))
                        runs[name].append(r)
                        print(f"[bench] c={c} round {rnd + 1} {name}: {r}", file=sys.stderr)
                res = {name: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
                       for name, rs in runs.items()}
                rows.append((c, res, runs))
            report.append("### HTTP: small responses through each proxy (wrk, keep-alive)\n")
            report.append("| c | direct req/s | nginx req/s | CHP req/s | hubfleet req/s | hubfleet / nginx | hubfleet / CHP |")
            report.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for c, r, _ in rows:
                report.append(
                    f"| {c} | {r['direct']['rps']:,.0f} | {r['nginx']['rps']:,.0f} | {r['CHP']['rps']:,.0f} | "
                    f"{r['hubfleet']['rps']:,.0f} | {r['hubfleet']['rps'] / r['nginx']['rps']:.2f}× | "
                    f"{r['hubfleet']['rps'] / r['CHP']['rps']:.1f}× |")
            report.append("")
            # Each round runs the four back to back, so a round's own ratio compares runs made
            # under the same conditions.
            for c, _, runs in rows:
                per_round = [h["rps"] / n["rps"] for h, n in zip(runs["hubfleet"], runs["nginx"])]
                ahead = sum(1 for x in per_round if x >= 1.0)
                report.append(
                    f"hubfleet / nginx per round at c={c}: "
                    + ", ".join(f"{x:.2f}" for x in per_round)
                    + f" ({ahead} of {len(per_round)} at or above 1.0)  ")
            report.append("")
            report.append("| c | latency p50 / p99 (ms): direct | nginx | CHP | hubfleet | p99 added by hubfleet (ms) | p99 added by nginx (ms) | errors (all four) |")
            report.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for c, r, _ in rows:
                cell = lambda k: f"{r[k]['p50']:.2f} / {r[k]['p99']:.2f}"
                errs = sum(r[k]["errors"] for k in r)
                report.append(
                    f"| {c} | {cell('direct')} | {cell('nginx')} | {cell('CHP')} | {cell('hubfleet')} | "
                    f"{r['hubfleet']['p99'] - r['direct']['p99']:.2f} | {r['nginx']['p99'] - r['direct']['p99']:.2f} | {errs} |")
            report.append("")
            report.append("CPU time per request: the proxy's user + system CPU time during the wrk run "
                          "(all its threads; nginx's master and workers), divided by the requests "
                          "answered. Less sensitive to other work on the machine than req/s.\n")
            report.append("| c | nginx µs/req | CHP µs/req | hubfleet µs/req | hubfleet / nginx |")
            report.append("| ---: | ---: | ---: | ---: | ---: |")
            for c, r, _ in rows:
                report.append(
                    f"| {c} | {r['nginx']['cpu_us']:.1f} | {r['CHP']['cpu_us']:.1f} | "
                    f"{r['hubfleet']['cpu_us']:.1f} | {r['hubfleet']['cpu_us'] / r['nginx']['cpu_us']:.2f}× |")
            report.append("")

        if "ws" not in skip:
            ws_rows = []
            for name, proc, port, api in (("hubfleet", hub, ports["hub"], ports["hub_api"]),
                                          ("CHP", chp, ports["chp"], ports["chp_api"])):
                add_ws_route(api, ports["ws_backend"])
                r = asyncio.run(ws_part(name, proc.pid, port, ports["ws_backend"], args.websockets))
                print(f"[bench] ws {name}: {r}", file=sys.stderr)
                ws_rows.append(r)
            report.append(f"### Idle WebSockets: {args.websockets:,} held open through the proxy{ws_note}\n")
            report.append("| proxy | held open | failed | RSS before (MiB) | RSS with all open (MiB) | per connection (KiB) | RSS after closing (MiB) | fds before / open / after |")
            report.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in ws_rows:
                per = (r["rss"] - r["before"]) * 1024 / max(1, r["held"])
                report.append(f"| {r['name']} | {r['held']:,} | {r['failures']} | {r['before']:.1f} | {r['rss']:.1f} | "
                              f"{per:.1f} | {r['after']:.1f} | {r['fds_before']} / {r['fds']} / {r['fds_after']} |")
            h, c_ = ws_rows[0], ws_rows[1]
            report.append(f"\nRSS with all open, CHP / hubfleet: {c_['rss'] / h['rss']:.1f}×.\n")

        if "routes" not in skip:
            lua = os.path.join(tmp, "routes.lua")
            with open(lua, "w") as f:
                f.write(LUA)
            rrows = []
            for name, proc, port, api in (("hubfleet", hub, ports["hub"], ports["hub_api"]),
                                          ("CHP", chp, ports["chp"], ports["chp_api"])):
                asyncio.run(add_routes(api, 10, backend))
                small = wrk(f"http://127.0.0.1:{port}", 32, args.duration, lua, {"BENCH_ROUTES": "10"})
                secs, statuses = asyncio.run(add_routes(api, args.routes, backend))
                big = wrk(f"http://127.0.0.1:{port}", 32, args.duration, lua,
                          {"BENCH_ROUTES": str(args.routes)})
                get_s, n = get_all_routes_seconds(api)
                r = {"name": name, "add_rate": args.routes / secs, "add_s": secs, "statuses": statuses,
                     "small": small, "big": big, "get_all_s": get_s, "n": n, "rss": rss_mib(proc.pid)}
                print(f"[bench] routes {name}: {r}", file=sys.stderr)
                rrows.append(r)
            report.append(f"### Routes: {args.routes:,} added through the REST API, then lookups\n")
            report.append("| proxy | add rate (routes/s, 16 connections) | req/s at 10 routes | req/s at "
                          f"{args.routes:,} routes | ratio | p99 at {args.routes:,} (ms) | GET /api/routes with all (s) | RSS (MiB) |")
            report.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in rrows:
                report.append(f"| {r['name']} | {r['add_rate']:,.0f} | {r['small']['rps']:,.0f} | {r['big']['rps']:,.0f} | "
                              f"{r['big']['rps'] / r['small']['rps']:.2f} | {r['big']['p99']:.2f} | {r['get_all_s']:.2f} ({r['n']:,} routes) | {r['rss']:.1f} |")
            report.append("")
            report.append("Add rate is measured by a Python asyncio client with 16 keep-alive connections; "
                          "for hubfleet the client is the limit, so it is a lower bound.\n")

        if "tls" not in skip:
            report.extend(tls_part(args, tmp, procs, backend, args.rounds, args.duration))

        load_end = os.getloadavg()[0]
        report.append(f"Idle RSS after start-up: hubfleet {idle_rss['hubfleet']:.1f} MiB, CHP {idle_rss['CHP']:.1f} MiB.\n")
        report.append(f"Command (from the repository root): `{os.environ.get('HUBFLEET_BENCH_CMD', 'bench/proxy/run.sh')}`\n")
        report.append(f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {version([args.bin, '--version'])} "
                      f"(`dist` profile build); configurable-http-proxy {chp_version} on node {version(['node', '--version'])}; "
                      f"{nginx_version}; {version(['sh', '-c', 'wrk --version 2>&1 | head -1']).split(' [')[0]}; "
                      f"wrk {args.duration} s per run, 2 threads (1 at c=1); HTTP cells are the median of "
                      f"{args.rounds} interleaved rounds.\n")
        report.append(f"Machine: {machine()}; 1-minute load average {load_start:.2f} at the start, "
                      f"{load_end:.2f} at the end. wrk, the backend and the proxy share the machine's cores.\n")
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def h2load(url, conns, duration, streams=1):
    """HTTP/2 load with h2load: req/s and the count answered 2xx."""
    cmd = ["h2load", "-c", str(conns), "-m", str(streams), "-t", str(max(1, min(2, conns))),
           "-D", str(duration), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, \d+ succeeded, (\d+) failed, "
                     r"(\d+) errored, (\d+) timeout", out)
    codes = re.search(r"status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not (m and done and codes):
        raise SystemExit(f"h2load output not understood:\n{out}")
    errors = sum(int(x) for x in done.groups()[1:]) + sum(int(x) for x in codes.groups())
    return {"rps": float(m.group(1)), "total": int(done.group(1)), "errors": errors}


def tls_part(args, tmp, procs, backend, rounds, duration):
    """TLS termination: HTTPS/1.1 (wrk) through nginx, CHP and hubfleet; HTTP/2 (h2load)
    through nginx and hubfleet (CHP has no HTTP/2). Returns report lines."""
    cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=bench.test"],
                   check=True, capture_output=True)
    ports = {k: free_port() for k in ("nginx", "chp", "chp_api", "hub", "hub_api")}
    conf = nginx_conf(tmp, "nginx-tls", "auto", f"""
  upstream backend {{ server {backend.removeprefix('http://')}; keepalive 256; }}
  server {{ listen 127.0.0.1:{ports['nginx']} ssl http2 backlog=4096;
    ssl_certificate {cert}; ssl_certificate_key {key};
{NGINX_PROXY_LOCATION} }}""")
    nginx = procs.start("nginx-tls", ["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"])
    env = {"CONFIGPROXY_AUTH_TOKEN": TOKEN}
    tls_flags = ["--ssl-cert", cert, "--ssl-key", key]
    chp = procs.start("chp-tls", [args.chp, "--ip", "127.0.0.1", "--port", str(ports["chp"]),
                                  "--api-ip", "127.0.0.1", "--api-port", str(ports["chp_api"]),
                                  "--default-target", backend, "--log-level", "error", *tls_flags], env)
    hub = procs.start("hubfleet-tls", [args.bin, "proxy", "--ip", "127.0.0.1", "--port", str(ports["hub"]),
                                       "--api-ip", "127.0.0.1", "--api-port", str(ports["hub_api"]),
                                       "--default-target", backend, "--log-level", "warn", *tls_flags], env)
    for k in ports:
        wait_port(ports[k])
    pids = {"nginx": with_children(nginx.pid), "CHP": [chp.pid], "hubfleet": [hub.pid]}
    url = lambda name: f"https://127.0.0.1:{ports[{'nginx': 'nginx', 'CHP': 'chp', 'hubfleet': 'hub'}[name]]}/user/u1/x"
    has_h2load = shutil.which("h2load") is not None
    kinds = [("HTTPS/1.1", name) for name in ("nginx", "CHP", "hubfleet")]
    if has_h2load:
        kinds += [("HTTP/2", name) for name in ("nginx", "hubfleet")]
    for kind, name in kinds:  # warm-up, not recorded
        (wrk(url(name), 32, 2) if kind == "HTTPS/1.1" else h2load(url(name), 32, 2))
    runs = {k: [] for k in kinds}
    for rnd in range(rounds):
        for kind, name in kinds:
            before = cpu_seconds(pids[name])
            r = wrk(url(name), 32, duration) if kind == "HTTPS/1.1" else h2load(url(name), 32, duration)
            r["cpu_us"] = (cpu_seconds(pids[name]) - before) * 1e6 / max(1, r["total"])
            runs[(kind, name)].append(r)
            print(f"[bench] tls round {rnd + 1} {kind} {name}: {r}", file=sys.stderr)
    med = {k: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2] for k, rs in runs.items()}
    lines = ["### TLS termination at c=32: HTTPS/1.1 (wrk) and HTTP/2 (h2load)\n",
             "Each proxy terminates TLS (a P-256 certificate; TLS 1.3) and forwards HTTP/1.1 to the same "
             "backend. HTTP/2 is h2load with 32 connections, one stream each; CHP has no HTTP/2.\n",
             "| protocol | proxy | req/s | CPU µs/req | errors | hubfleet / this (req/s) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for kind, name in kinds:
        r = med[(kind, name)]
        ours = med[(kind, "hubfleet")]["rps"]
        lines.append(f"| {kind} | {name} | {r['rps']:,.0f} | {r['cpu_us']:.1f} | {r['errors']} | "
                     f"{ours / r['rps']:.2f}× |")
    if not has_h2load:
        lines.append("\nHTTP/2 not measured: h2load is not installed (apt-get install nghttp2-client).")
    lines.append(f"\nMedian of {rounds} interleaved rounds of {duration} s.\n")
    return lines


def add_ws_route(api_port, ws_port):
    import urllib.request
    body = json.dumps({"target": f"http://127.0.0.1:{ws_port}"}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{api_port}/api/routes/user/u1/ws", data=body,
                                 method="POST", headers={"Authorization": f"token {TOKEN}",
                                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201, r.status


if __name__ == "__main__":
    main()
