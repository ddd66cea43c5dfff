#!/usr/bin/env python3
"""Soak `hubfleet proxy` (and, with --peer, configurable-http-proxy side by side) at constant
load, sampling each proxy's RSS and open file descriptors every --every seconds.

Load on each proxy, for --minutes:
  * wrk, 32 keep-alive connections, to a live route (nginx backend);
  * wrk, 4 connections with `Connection: close` (a new TCP connection per request);
  * wrk, 4 connections to a route whose server is gone (503s; CHP once leaked sockets here);
  * route churn: 200 routes added and deleted through the REST API every sample.

Prints a Markdown table of samples and the drift (last sample minus the first sample taken
after warm-up). Standard library only; needs wrk, nginx, node for --peer.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "bench", "proxy"))
import bench  # noqa: E402  (bench/proxy/bench.py: ports, nginx config, rss)

TOKEN = bench.TOKEN


def api(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/routes{path}", data=data,
                                 method=method, headers={"Authorization": f"token {TOKEN}",
                                                         "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(REPO, "target/dist/hubfleet"))
    ap.add_argument("--chp", default=os.path.join(REPO, "bench/proxy/node_modules/.bin/configurable-http-proxy"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--every", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=30)
    ap.add_argument("--peer", action="store_true", help="also soak CHP, side by side")
    ap.add_argument("--out")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="soak-proxy-")
    procs = bench.Procs(tmp)
    loads = []
    try:
        bport = bench.free_port()
        backend = f"http://127.0.0.1:{bport}"
        conf = bench.nginx_conf(tmp, "backend", 1, f"""
  server {{ listen 127.0.0.1:{bport} backlog=4096;
    location / {{ return 200 "{bench.BODY}"; }} }}""")
        procs.start("backend", ["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"])
        env = {"CONFIGPROXY_AUTH_TOKEN": TOKEN}
        proxies = []
        p, a = bench.free_port(), bench.free_port()
        proc = procs.start("hubfleet", [args.bin, "proxy", "--ip", "127.0.0.1", "--port", str(p),
                                        "--api-ip", "127.0.0.1", "--api-port", str(a),
                                        "--default-target", backend, "--log-level", "error"], env)
        proxies.append(("hubfleet", proc, p, a))
        if args.peer:
            p, a = bench.free_port(), bench.free_port()
            proc = procs.start("chp", [args.chp, "--ip", "127.0.0.1", "--port", str(p), "--api-ip",
                                       "127.0.0.1", "--api-port", str(a), "--default-target",
                                       backend, "--log-level", "error"], env)
            proxies.append(("CHP", proc, p, a))
        bench.wait_port(bport)
        for _, proc, p, a in proxies:
            bench.wait_port(p, proc)
            bench.wait_port(a, proc)
            assert api(a, "POST", "/user/dead", {"target": f"http://127.0.0.1:{bench.free_port()}"}) == 201
        duration = int(args.minutes * 60)
        for name, _, p, _ in proxies:
            base = f"http://127.0.0.1:{p}"
            common = ["wrk", "-t", "1", "-d", f"{duration}s", "--timeout", "5s"]
            loads.append(subprocess.Popen(common + ["-c", "32", f"{base}/user/live/x"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            loads.append(subprocess.Popen(common + ["-c", "4", "-H", "Connection: close",
                                                    f"{base}/user/close/x"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            loads.append(subprocess.Popen(common + ["-c", "4", f"{base}/user/dead/x"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        start = time.time()
        samples = []
        churn = 0
        while time.time() - start < duration:
            for _, _, _, a in proxies:
                for i in range(200):
                    api(a, "POST", f"/user/churn{i}", {"target": backend})
                for i in range(200):
                    api(a, "DELETE", f"/user/churn{i}")
            churn += 200
            t = time.time() - start
            row = {"t": t}
            for name, proc, _, _ in proxies:
                row[name] = (bench.rss_mib(proc.pid), bench.fd_count(proc.pid))
            samples.append(row)
            print(f"[soak] {t:6.0f}s " + "  ".join(
                f"{n}: rss {row[n][0]:.1f} MiB fds {row[n][1]}" for n, *_ in proxies), file=sys.stderr)
            time.sleep(max(0.0, args.every - (time.time() - start - t)))
        for l in loads:
            l.wait(timeout=60)
        names = [n for n, *_ in proxies]
        lines = ["| t (s) | " + " | ".join(f"{n} RSS (MiB) | {n} fds" for n in names) + " |",
                 "| ---: | " + " | ".join("---: | ---:" for _ in names) + " |"]
        for s in samples:
            lines.append(f"| {s['t']:.0f} | " + " | ".join(f"{s[n][0]:.1f} | {s[n][1]}" for n in names) + " |")
        warm = [s for s in samples if s["t"] >= args.warmup] or samples
        drift = []
        for n in names:
            first, last = warm[0][n], warm[-1][n]
            peak = max(s[n][0] for s in warm)
            drift.append(f"{n}: RSS {first[0]:.1f} → {last[0]:.1f} MiB (peak {peak:.1f}), "
                         f"fds {first[1]} → {last[1]}")
        text = "\n".join(lines) + "\n\nDrift after warm-up: " + "; ".join(drift) + \
            f". Route churn: {churn:,} adds and deletes per proxy.\n"
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    finally:
        for l in loads:
            if l.poll() is None:
                l.send_signal(signal.SIGTERM)
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
