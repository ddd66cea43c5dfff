#!/usr/bin/env python3
"""REST API benchmark: hubfleet vs upstream JupyterHub, side by side, with wrk.

Starts, in one run, on loopback:

  (a) hubfleet (`hubfleet serve`, SQLite, built-in proxy), and
  (b) upstream JupyterHub (from the venv, SQLite, DummyAuthenticator) behind
      configurable-http-proxy (CHP), as deployed;

gives each an admin service with a known API token (hubfleet: `hub.services`;
JupyterHub: `c.JupyterHub.services` with `admin: True`), creates the same 1,000 users
in each (`POST /hub/api/users`), checks that every measured request answers 2xx, and
then runs wrk against

  GET  /hub/api/users/{name}
  GET  /hub/api/users?limit=200
  POST /hub/api/users/{name}/activity   (JSON {"last_activity": "<now>Z"}, wrk Lua)

for each concurrency, taking turns: hubfleet, JupyterHub through CHP, JupyterHub's hub
port directly (no proxy). Reports requests/s, p99 latency and the ratios, and writes
the "## REST API" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SECTION = "## REST API"
DOC_INTRO = (
    "# Benchmarks\n\nFigures from runs on the machine named under each table. "
    "Each section gives the command that produced it.\n"
)
USER = "user-0500"  # the user of the per-user requests (set from --users: the middle one)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


def http(method: str, url: str, token: str | None = None, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Hub:
    label = ""

    def __init__(self, root: Path, token: str):
        self.root = root
        root.mkdir(parents=True)
        self.token = token
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "hub.log"
        self.base = ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, env_path: str, timeout: float = 120) -> None:
        cmd = self.command()
        log(f"{self.label}: starting {' '.join(cmd)}")
        env = dict(os.environ)
        env["PATH"] = env_path
        env.setdefault("RUST_LOG", "warn")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited during start-up:\n{self.log_tail()}")
            try:
                status, _ = http("GET", self.base + "/hub/api/user", self.token, timeout=5)
                if status == 200:
                    log(f"{self.label}: up at {self.base}")
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise BenchError(f"{self.label}: API not answering after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class Ours(Hub):
    label = "hubfleet"

    def __init__(self, root, token, binary: Path, venv: Path, port: int):
        super().__init__(root, token)
        self.binary, self.venv, self.port = binary, venv, port
        self.base = f"http://127.0.0.1:{port}"

    def command(self):
        cfg = self.root / "hub.yaml"
        cfg.write_text(
            "hub:\n"
            "  config:\n"
            "    JupyterHub:\n"
            "      authenticator_class: dummy\n"
            "  services:\n"
            "    bench:\n"
            "      admin: true\n"
            f"      apiToken: {self.token}\n"
            "cull:\n"
            "  enabled: false\n"
            "hubfleet:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            f"  data_dir: {self.root / 'data'}\n"
            "  local:\n"
            f"    python_env: {self.venv}\n"
        )
        return [str(self.binary), "serve", "--config", str(cfg)]

    def pids(self):
        return {"hub": self.proc.pid}


class Upstream(Hub):
    label = "JupyterHub"

    def __init__(self, root, token, venv: Path, chp: Path, port: int, hub_port: int, api_port: int):
        super().__init__(root, token)
        self.venv, self.chp = venv, chp
        self.port, self.hub_port, self.api_port = port, hub_port, api_port
        self.base = f"http://127.0.0.1:{port}"
        self.direct = f"http://127.0.0.1:{hub_port}"

    def command(self):
        cfg = self.root / "jupyterhub_config.py"
        cfg.write_text(
            "c = get_config()  # noqa\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            f"c.JupyterHub.services = [{{'name': 'bench', 'api_token': {self.token!r}, 'admin': True}}]\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'\n"
            "c.JupyterHub.hub_ip = '127.0.0.1'\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            f"c.ConfigurableHTTPProxy.command = [{str(self.chp)!r}]\n"
            f"c.ConfigurableHTTPProxy.pid_file = {str(self.root / 'proxy.pid')!r}\n"
            f"c.JupyterHub.db_url = 'sqlite:///{self.root / 'jupyterhub.sqlite'}'\n"
            f"c.JupyterHub.cookie_secret_file = {str(self.root / 'cookie_secret')!r}\n"
            "c.JupyterHub.log_level = 'WARN'\n"
            "c.JupyterHub.cleanup_proxy = True\n"
        )
        return [str(self.venv / "bin" / "jupyterhub"), "-f", str(cfg)]

    def chp_pid(self) -> int | None:
        try:
            return int((self.root / "proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def pids(self):
        return {"hub": self.proc.pid, "proxy": self.chp_pid()}


# --------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------

ACTIVITY_LUA = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local now = os.date("!%Y-%m-%dT%H:%M:%S")
  return wrk.format(nil, nil, nil, '{"last_activity": "' .. now .. '.000000Z"}')
end
"""

# wrk's summary, written by its `done` hook: one JSON line, latencies in microseconds.
DONE_LUA = """\
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "status_errors": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %.1f}\\n',
    summary.requests, summary.duration, errors, summary.errors.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk(url: str, token: str, conns: int, duration: int, lua: Path, threads: int) -> dict:
    cmd = ["wrk", f"-t{min(threads, conns)}", f"-c{conns}", f"-d{duration}s", "--timeout", "10s",
           "-H", f"Authorization: token {token}", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"^WRKJSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


# --------------------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------------------


def ensure_binary(given: Path | None, build: bool, note: str | None = None) -> tuple[Path, str]:
    if given is not None:
        if not given.exists():
            raise BenchError(f"{given} not found")
        return given.resolve(), note or f"given binary {given}"
    binary = REPO / "target" / "release" / "hubfleet"
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates",
                       "Cargo.toml", "Cargo.lock"], capture_output=True, text=True).stdout.strip():
        git += " with uncommitted changes in crates/"
    if build:
        log("cargo build --release -p hubfleet")
        if subprocess.run(["cargo", "build", "--release", "-p", "hubfleet"], cwd=REPO).returncode == 0:
            return binary, f"release build of commit {git}"
        if not binary.exists():
            raise BenchError("cargo build --release -p hubfleet failed and there is no binary")
        log("WARNING: cargo build failed; using the existing target/release/hubfleet")
    if not binary.exists():
        raise BenchError(f"{binary} not found")
    mtime = _dt.datetime.fromtimestamp(binary.stat().st_mtime, _dt.timezone.utc)
    return binary, f"existing release binary built {mtime:%Y-%m-%d %H:%M} UTC (HEAD {git})"


def ensure_chp() -> Path:
    for d in (HERE, HERE.parent / "spawn", HERE.parent / "proxy"):
        chp = d / "node_modules" / ".bin" / "configurable-http-proxy"
        if chp.exists():
            return chp
    log(f"npm install --prefix {HERE} configurable-http-proxy")
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE),
                    "configurable-http-proxy"], check=True)
    return HERE / "node_modules" / ".bin" / "configurable-http-proxy"


def chp_version(chp: Path) -> str:
    try:
        pkg = chp.resolve().parent.parent / "package.json"
        return json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def seed_users(hub: Hub, n: int) -> float:
    names = [f"user-{i:04d}" for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, 100):
        status, body = http("POST", hub.base + "/hub/api/users", hub.token,
                            {"usernames": names[i:i + 100]}, timeout=600)
        if status != 201:
            raise BenchError(f"{hub.label}: POST /hub/api/users: {status} {body[:300]!r}")
    status, body = http("GET", hub.base + "/hub/api/users?limit=200", hub.token)
    if status != 200 or len(json.loads(body)) != 200:
        raise BenchError(f"{hub.label}: users not created: {status} {body[:300]!r}")
    return time.perf_counter() - t0


def check_endpoints(base: str, token: str, label: str) -> None:
    """Every measured request answers 2xx with the expected body."""
    status, body = http("GET", f"{base}/hub/api/users/{USER}", token)
    if status != 200 or json.loads(body).get("name") != USER:
        raise BenchError(f"{label}: GET /users/{USER}: {status} {body[:300]!r}")
    status, body = http("GET", f"{base}/hub/api/users?limit=200", token)
    if status != 200 or len(json.loads(body)) != 200:
        raise BenchError(f"{label}: GET /users?limit=200: {status} {body[:300]!r}")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    status, body = http("POST", f"{base}/hub/api/users/{USER}/activity", token, {"last_activity": now})
    if status != 200:
        raise BenchError(f"{label}: POST /users/{USER}/activity: {status} {body[:300]!r}")


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "unknown"
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
            break
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "mem": mem, "kernel": platform.release()}


def write_doc(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else DOC_INTRO
    section = SECTION + "\n\n" + body.strip() + "\n"
    pat = re.compile(r"^" + re.escape(SECTION) + r"\s*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET /hub/api/users/{name}", "get_user"),
    ("GET /hub/api/users?limit=200", "list_users"),
    ("POST /hub/api/users/{name}/activity", "activity"),
]


def url_for(base: str, key: str) -> str:
    return {
        "get_user": f"{base}/hub/api/users/{USER}",
        "list_users": f"{base}/hub/api/users?limit=200",
        "activity": f"{base}/hub/api/users/{USER}/activity",
    }[key]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=os.environ.get("HUBFLEET_PYTHON_ENV") or None)
    ap.add_argument("--duration", type=int, default=15, help="seconds per wrk run (default 15)")
    ap.add_argument("--concurrency", default="8,32", help="comma-separated (default 8,32)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--no-direct", action="store_true", help="skip JupyterHub's hub port without CHP")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--hubfleet", type=Path, default=None,
                    help="hubfleet binary (default: target/release/hubfleet, built first)")
    ap.add_argument("--hubfleet-note", default=None, help="where the --hubfleet binary comes from, for the report")
    ap.add_argument("--ours-port", type=int, default=18300)
    ap.add_argument("--upstream-port", type=int, default=18310)
    ap.add_argument("--upstream-hub-port", type=int, default=18381)
    ap.add_argument("--upstream-api-port", type=int, default=18311)
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.venv is None:
        ap.error("no venv: pass --venv or set HUBFLEET_PYTHON_ENV")
    venv = args.venv.resolve()
    if not (venv / "bin" / "jupyterhub").exists():
        raise BenchError(f"{venv}/bin/jupyterhub missing: pip install jupyterhub there")
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found: apt-get install wrk")
    ports = [args.ours_port, args.upstream_port, args.upstream_hub_port, args.upstream_api_port]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise BenchError(f"port(s) {busy} in use; choose others with --*-port")
    concs = [int(c) for c in args.concurrency.split(",")]
    global USER
    USER = f"user-{args.users // 2:04d}"

    binary, provenance = ensure_binary(args.hubfleet, build=not args.no_build, note=args.hubfleet_note)
    chp = ensure_chp()
    tmp = Path(tempfile.mkdtemp(prefix="hubfleet-bench-api-"))
    (tmp / "activity.lua").write_text(ACTIVITY_LUA + DONE_LUA)
    (tmp / "get.lua").write_text(DONE_LUA)
    token = secrets.token_hex(16)
    ours = Ours(tmp / "ours", token, binary, venv, args.ours_port)
    up = Upstream(tmp / "upstream", token, venv, chp, args.upstream_port,
                  args.upstream_hub_port, args.upstream_api_port)
    env_path = f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}"
    load_start = open("/proc/loadavg").read().split()[0]
    results: dict = {}
    rss: dict = {}
    seed_s: dict = {}
    ok = False
    try:
        for h in (ours, up):
            h.start(env_path)
            seed_s[h.label] = seed_users(h, args.users)
            log(f"{h.label}: {args.users} users created in {seed_s[h.label]:.1f} s")
        targets = [("hubfleet", ours.base), ("JupyterHub + CHP", up.base)]
        if not args.no_direct:
            targets.append(("JupyterHub, hub port", up.direct))
        for label, base in targets:
            check_endpoints(base, token, label)
        for _title, key in ENDPOINTS:
            lua = tmp / ("activity.lua" if key == "activity" else "get.lua")
            for c in concs:
                for label, base in targets:
                    wrk(url_for(base, key), token, min(c, 8), 2, lua, args.threads)  # warm-up
                    r = wrk(url_for(base, key), token, c, args.duration, lua, args.threads)
                    results[(key, c, label)] = r
                    log(f"{key} c={c} {label}: {r['rps']:.1f} req/s, p99 {r['p99_us'] / 1000:.1f} ms, "
                        f"errors {r['errors']}")
        rss = {"hubfleet": rss_kib(ours.proc.pid),
               "JupyterHub": rss_kib(up.proc.pid), "CHP": rss_kib(up.chp_pid())}
        ok = True
    except BenchError as e:
        log(f"ABORTED: {e}")
        print(f"error: {e}", file=sys.stderr)
    finally:
        for h in (ours, up):
            try:
                h.stop()
            except Exception as e:  # noqa: BLE001
                log(f"{h.label}: stop failed: {e}")
        if args.keep or not ok:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if not ok:
        return 1

    load_end = open("/proc/loadavg").read().split()[0]
    jh_version = subprocess.run([str(venv / "bin" / "python"), "-c",
                                 "import jupyterhub; print(jupyterhub.__version__)"],
                                capture_output=True, text=True).stdout.strip()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")
    ours_version = subprocess.run([str(binary), "--version"], capture_output=True,
                                  text=True).stdout.replace("hubfleet", "").strip()
    m = machine()

    labels = [t[0] for t in targets]
    head = "| request | c | " + " | ".join(f"{lab} req/s | p99 ms" for lab in labels)
    head += " | req/s ratio hubfleet / JupyterHub + CHP"
    if not args.no_direct:
        head += " | req/s ratio hubfleet / hub port"
    head += " |"
    rows = [head, "| --- | ---: |" + " ---: | ---: |" * len(labels) + " ---: |" * (len(labels) - 1)]
    errors = []
    for title, key in ENDPOINTS:
        for c in concs:
            cells = [f"`{title}`", str(c)]
            for lab in labels:
                r = results[(key, c, lab)]
                cells += [f"{r['rps']:,.0f}", f"{r['p99_us'] / 1000:.1f}"]
                if r["errors"]:
                    errors.append(f"{title} c={c} {lab}: {r['errors']} errors "
                                  f"({r['status_errors']} non-2xx/3xx) of {r['requests']}")
            o = results[(key, c, "hubfleet")]["rps"]
            for lab in labels[1:]:
                cells.append(f"{o / results[(key, c, lab)]['rps']:.0f}×")
            rows.append("| " + " | ".join(cells) + " |")
    table = "\n".join(rows)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd_line = os.environ.get("HUBFLEET_BENCH_CMD") or "python bench/api/bench.py " + " ".join(sys.argv[1:])

    def mib(k):
        return "n/a" if k is None else f"{k / 1024:.1f}"

    body = (
        f"Requests per second and 99th-percentile latency from wrk ({args.threads} threads, "
        f"{args.duration} s per run after a 2 s warm-up, `Authorization: token` of an admin "
        f"service) for three API requests, against hubfleet and JupyterHub {jh_version} in one "
        "run, taking turns per request and concurrency. Both on SQLite, each with the same "
        f"{args.users} users (`user-0000` … ; the per-user requests name `{USER}`), no servers "
        "running. hubfleet answers on its one port (built-in proxy, hub in process); "
        f"JupyterHub is measured through configurable-http-proxy {chp_version(chp)} (its public "
        "port, as deployed)"
        + ("" if args.no_direct else " and on its hub port directly (no proxy)")
        + ". The activity request is a wrk Lua script posting "
        "`{\"last_activity\": \"<now>.000000Z\"}`. wrk runs on the same 2 cores as the hubs.\n\n"
        + table + "\n\n"
        + ("Errors: " + "; ".join(errors) + "\n\n" if errors else "All measured requests answered 2xx.\n\n")
        + f"RSS after the runs: hubfleet {mib(rss.get('hubfleet'))} MiB; JupyterHub "
          f"{mib(rss.get('JupyterHub'))} MiB + CHP {mib(rss.get('CHP'))} MiB. Creating the "
          f"{args.users} users ({-(-args.users // 100)} × `POST /hub/api/users` of up to 100): hubfleet "
          f"{seed_s['hubfleet']:.1f} s, JupyterHub {seed_s['JupyterHub']:.1f} s.\n\n"
        + f"Command (from the repository root): `{cmd_line}`\n\n"
        + f"Run: {when}; hubfleet {ours_version} ({provenance}); JupyterHub {jh_version} "
          f"(`{venv.name}` venv, Python {platform.python_version()} for the driver), "
          f"configurable-http-proxy {chp_version(chp)} on node {node}, wrk 4.1.0.\n\n"
        + f"Machine: nproc {m['nproc']}, CPU `{m['cpu']}`, memory {m['mem']}, Linux {m['kernel']}; "
          f"1-minute load average {load_start} at the start, {load_end} at the end "
          "(other work on the machine shows there).\n"
    )
    print(SECTION + "\n\n" + body)
    if not args.no_doc:
        write_doc(args.doc, body)
        log(f"wrote {args.doc}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
