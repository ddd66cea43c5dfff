#!/usr/bin/env python3
"""Scale benchmark: 1,000 concurrent spawns, 10,000 and 100,000 users, a culler pass.

Runs, in one run and one after the other on loopback,

  (a) hubfleet (`hubfleet serve`, SQLite, built-in proxy, local-process spawner), and
  (b) upstream JupyterHub 6 (from the venv, SQLite, SimpleLocalProcessSpawner) behind
      configurable-http-proxy (CHP, from npm),

both starting the same tiny server (bench/scale/tiny_server.rs: answers the readiness probe,
posts its activity), so that a spawn costs what the hub does. For each hub:

  1. 10,000 users are written straight into the hub's SQLite database (the hub's own schema:
     hubfleet's `users`; JupyterHub's `users` with a `cookie_id` and the `user` role in
     `user_role_map`, as its API would leave them), with the hub stopped;
  2. 1,000 concurrent `POST /hub/api/users/<name>/server` (an admin service's token), each
     followed to ready by the progress stream (SSE) when it answers 202: at the hub's default
     `concurrent_spawn_limit` (hubfleet 64, z2jh's; JupyterHub 100), counting 429s, then, after
     a restart, with the limit off (0);
  3. with 1,000 servers running: hub (+ proxy) RSS, `GET /hub/api/users?state=active` as the
     idle culler walks it (paginated) and as one `limit=200` page, then the real
     `jupyterhub-idle-culler` (`cull_idle`, concurrency 10) once with nothing to cull and once
     culling all 1,000;
  4. 90,000 more users; start-up to the first answer at 100,000 users (second start after the
     import: the first is reported too) and RSS.

Writes docs/benchmarks/scale/scale.csv (and spawns.csv, one row per spawn), draws the SVG
plots from the CSV, prints hubfleet's figures beside JupyterHub's with the ratios, and writes
the "## Scale" section of docs/benchmarks.md. `--replot` redoes the plots and the section from
the CSV alone. `--quick` is a smaller run (200 spawns, 2,000 and 20,000 users) written to
target/bench-scale-quick/ and not to the docs.

Run it with the Python of the venv that has jupyterhub (it re-executes itself with
$HUBFLEET_PYTHON_ENV/bin/python when httpx is missing). See bench/scale/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as _dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = REPO / "docs" / "benchmarks" / "scale"
QUICK_OUT = REPO / "target" / "bench-scale-quick"
CHP_FIXTURE = REPO / "crates" / "hubfleet" / "tests" / "fixtures" / "chp"
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Scale: 1,000 servers, 100,000 users"
TOKEN = "scale-bench-" + secrets.token_hex(16)
LABELS = {"ours": "hubfleet", "upstream": "JupyterHub"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------
# machine and processes
# --------------------------------------------------------------------------------------


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


def load1() -> float:
    return float(open("/proc/loadavg").read().split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procs_under(root: Path) -> list[int]:
    """Processes whose cwd or command line points under `root` (servers, hubs, proxies)."""
    root_s = str(root)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            cwd = ""
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if cwd == root_s or cwd.startswith(root_s + "/") or root_s in cmd:
            found.append(int(entry))
    return found


def kill_under(root: Path) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 2)):
        left = procs_under(root)
        if not left:
            return
        log(f"  {len(left)} leftover processes under {root}: {sig.name}")
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + wait
        while time.time() < end and procs_under(root):
            time.sleep(0.2)


def machine() -> dict[str, str]:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "unknown")
    mem = next((f"{int(l.split()[1]) / 1024 / 1024:.1f} GiB" for l in open("/proc/meminfo")
                if l.startswith("MemTotal:")), "unknown")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nproc": str(os.cpu_count()), "cpu": cpu, "mem": mem, "kernel": platform.release(),
        "nofile": f"{soft}/{hard}",
        "pid_max": open("/proc/sys/kernel/pid_max").read().strip(),
        "ports": open("/proc/sys/net/ipv4/ip_local_port_range").read().split(),
    }


def raise_nofile() -> str:
    """Open-file limit up to the hard limit (the hubs inherit it); what it is now."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"


# --------------------------------------------------------------------------------------
# hubs
# --------------------------------------------------------------------------------------


class Hub:
    key = ""

    def __init__(self, root: Path, venv: Path, tiny: Path):
        self.root = root
        root.mkdir(parents=True)
        self.venv = venv
        self.tiny = tiny
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "hub.log"
        self.base = ""
        self.spawn_limit: int | None = None

    @property
    def label(self) -> str:
        return LABELS[self.key]

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 900) -> float:
        """Start; seconds from exec to the first 200 of `GET /hub/api/`."""
        cmd = self.command()
        env = dict(os.environ)
        env["PATH"] = f"{self.venv}/bin:{env.get('PATH', '/usr/bin:/bin')}"
        env.setdefault("RUST_LOG", "info")
        logf = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        logf.close()
        host, port = self.base.removeprefix("http://").split(":")
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited during start-up:\n{self.log_tail()}")
            try:
                with socket.create_connection((host, int(port)), timeout=1) as s:
                    s.settimeout(timeout)
                    s.sendall(f"GET /hub/api/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
                              "Connection: close\r\n\r\n".encode())
                    head = s.recv(12)
                    if head.startswith(b"HTTP/1.1 200"):
                        return time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.01)
        raise BenchError(f"{self.label} did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def pids(self) -> dict[str, int | None]:
        return {"hub": self.proc.pid if self.proc else None}

    def rss(self) -> dict[str, int | None]:
        return {k: rss_kib(p) for k, p in self.pids().items()}

    def db(self) -> Path:
        raise NotImplementedError

    def insert_users(self, first: int, last: int) -> float:
        raise NotImplementedError


def user_name(i: int) -> str:
    return f"user-{i:06d}"


class Ours(Hub):
    key = "ours"

    def __init__(self, root, venv, tiny, binary: Path):
        super().__init__(root, venv, tiny)
        self.binary = binary
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def command(self):
        cfg = self.root / "hub.yaml"
        limit = "" if self.spawn_limit is None else f"  concurrentSpawnLimit: {self.spawn_limit}\n"
        cfg.write_text(
            "hub:\n"
            f"{limit}"
            "  config:\n"
            "    JupyterHub:\n"
            "      authenticator_class: dummy\n"
            "  services:\n"
            "    bench:\n"
            "      admin: true\n"
            f"      apiToken: {TOKEN}\n"
            "cull:\n"
            "  enabled: false\n"
            "singleuser:\n"
            f"  cmd: [{self.tiny}]\n"
            "  startTimeout: 300\n"
            "hubfleet:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            f"  data_dir: {self.root / 'data'}\n"
            "  local:\n"
            f"    python_env: {self.venv}\n"
            "    allow_root: true\n"
        )
        return [str(self.binary), "serve", "--config", str(cfg)]

    def db(self):
        return self.root / "data" / "hubfleet.sqlite"

    def insert_users(self, first, last):
        t0 = time.perf_counter()
        now = int(time.time() * 1_000_000)
        with sqlite3.connect(self.db()) as c:
            c.executemany("INSERT INTO users (name, admin, created) VALUES (?, 0, ?)",
                          ((user_name(i), now) for i in range(first, last)))
        return time.perf_counter() - t0


class Upstream(Hub):
    key = "upstream"

    def __init__(self, root, venv, tiny, chp: Path):
        super().__init__(root, venv, tiny)
        self.chp = chp
        self.port, self.hub_port, self.api_port = free_port(), free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"

    def command(self):
        cfg = self.root / "jupyterhub_config.py"
        limit = 100 if self.spawn_limit is None else self.spawn_limit
        cfg.write_text(
            "c = get_config()  # noqa\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            "c.Authenticator.allow_all = True\n"
            f"c.JupyterHub.services = [{{'name': 'bench', 'api_token': {TOKEN!r}, 'admin': True}}]\n"
            "c.JupyterHub.spawner_class = 'simple'\n"
            f"c.SimpleLocalProcessSpawner.home_dir_template = {str(self.root / 'homes') + '/{username}'!r}\n"
            f"c.Spawner.cmd = [{str(self.tiny)!r}]\n"
            # hubfleet's startTimeout (z2jh's 300 s) bounds the whole start.
            "c.Spawner.start_timeout = 300\n"
            "c.Spawner.http_timeout = 300\n"
            f"c.JupyterHub.concurrent_spawn_limit = {limit}\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'\n"
            "c.JupyterHub.hub_ip = '127.0.0.1'\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            f"c.ConfigurableHTTPProxy.command = [{str(self.chp)!r}]\n"
            f"c.ConfigurableHTTPProxy.pid_file = {str(self.root / 'proxy.pid')!r}\n"
            f"c.JupyterHub.db_url = 'sqlite:///{self.db()}'\n"
            f"c.JupyterHub.cookie_secret_file = {str(self.root / 'cookie_secret')!r}\n"
            "c.JupyterHub.cleanup_servers = True\n"
            "c.JupyterHub.cleanup_proxy = True\n"
        )
        return [str(self.venv / "bin" / "jupyterhub"), "-f", str(cfg)]

    def chp_pid(self) -> int | None:
        try:
            pid = int((self.root / "proxy.pid").read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return pid if b"configurable-http-proxy" in f.read() else None
        except (OSError, ValueError):
            return None

    def pids(self):
        return {"hub": self.proc.pid if self.proc else None, "proxy": self.chp_pid()}

    def stop(self):
        super().stop()
        pid = self.chp_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)

    def db(self):
        return self.root / "jupyterhub.sqlite"

    def insert_users(self, first, last):
        t0 = time.perf_counter()
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
        with sqlite3.connect(self.db()) as c:
            (role,) = c.execute("SELECT id FROM roles WHERE name = 'user'").fetchone()
            c.executemany(
                "INSERT INTO users (name, admin, created, cookie_id) VALUES (?, 0, ?, ?)",
                ((user_name(i), now, uuid.uuid4().hex) for i in range(first, last)))
            c.execute(
                "INSERT INTO user_role_map (user_id, role_id, managed_by_auth) SELECT id, ?, 0 FROM users "
                "WHERE id NOT IN (SELECT user_id FROM user_role_map)", (role,))
        return time.perf_counter() - t0


# --------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.rows: list[dict] = []
        self.spawns: list[dict] = []

    def add(self, hub: Hub, scenario: str, metric: str, value, unit: str) -> None:
        row = {"hub": hub.key, "scenario": scenario, "metric": metric,
               "value": value, "unit": unit, "load1": load1()}
        self.rows.append(row)
        log(f"  {hub.label} {scenario} {metric} = {value} {unit}")

    def keep_others(self, only: str) -> None:
        """With `--only`: the other hub's rows of the last run stay in the CSV files."""
        for name, rows in (("scale.csv", self.rows), ("spawns.csv", self.spawns)):
            try:
                with open(OUT / name) as f:
                    rows[:0] = [r for r in csv.DictReader(f) if r["hub"] != only]
            except OSError:
                pass

    def write(self) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / "scale.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["hub", "scenario", "metric", "value", "unit", "load1"])
            w.writeheader()
            w.writerows(self.rows)
        with open(OUT / "spawns.csv", "w", newline="") as f:
            w = csv.DictWriter(f, ["hub", "limit", "user", "outcome", "seconds"])
            w.writeheader()
            w.writerows(self.spawns)


def record_rss(rec: Recorder, hub: Hub, scenario: str) -> None:
    rss = hub.rss()
    for part, kib in rss.items():
        rec.add(hub, scenario, f"rss_{part}_mib", round(kib / 1024, 1) if kib else "", "MiB")
    if all(v is not None for v in rss.values()):
        rec.add(hub, scenario, "rss_total_mib", round(sum(rss.values()) / 1024, 1), "MiB")


def auth() -> dict[str, str]:
    return {"Authorization": f"token {TOKEN}"}


async def spawn_storm(hub: Hub, n: int, limit_label: str, rec: Recorder) -> None:
    """`n` concurrent starts through the API; each to ready (progress stream) or its error."""
    import httpx

    timeout = httpx.Timeout(connect=120, read=None, write=120, pool=None)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=hub.base, headers=auth(), timeout=timeout,
                                 limits=limits) as client:

        async def one(i: int) -> dict:
            user = user_name(i)
            sent = time.perf_counter()
            outcome, detail = "error", ""
            try:
                r = await client.post(f"/hub/api/users/{user}/server")
                if r.status_code == 201:
                    outcome = "ready"
                elif r.status_code == 429:
                    outcome = "429"
                elif r.status_code == 202:
                    outcome, detail = "error", "progress stream ended without a final event"
                    async with client.stream(
                            "GET", f"/hub/api/users/{user}/server/progress",
                            headers={"Accept": "text/event-stream"}) as s:
                        async for line in s.aiter_lines():
                            if not line.startswith("data:"):
                                continue
                            event = json.loads(line[5:])
                            if event.get("ready"):
                                outcome = "ready"
                                break
                            if event.get("failed"):
                                outcome, detail = "failed", event.get("message", "")
                                break
                else:
                    detail = f"{r.status_code} {r.text[:200]}"
            except Exception as e:  # noqa: BLE001
                detail = repr(e)
            seconds = time.perf_counter() - sent
            if outcome in ("error", "failed"):
                log(f"  {hub.label} {user}: {outcome}: {detail}")
            return {"hub": hub.key, "limit": limit_label, "user": user, "outcome": outcome,
                    "seconds": round(seconds, 4)}

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        total = time.perf_counter() - t0
    rec.spawns.extend(results)
    ready = sorted(r["seconds"] for r in results if r["outcome"] == "ready")
    refused = sum(r["outcome"] == "429" for r in results)
    errors = sum(r["outcome"] in ("error", "failed") for r in results)
    scenario = f"{n} concurrent spawns, limit {limit_label}"
    rec.add(hub, scenario, "ready", len(ready), "servers")
    rec.add(hub, scenario, "http_429", refused, "requests")
    rec.add(hub, scenario, "errors", errors, "spawns")
    if ready:
        rec.add(hub, scenario, "all_ready_s", round(max(ready), 2), "s")
        rec.add(hub, scenario, "p50_s", round(statistics.median(ready), 2), "s")
        rec.add(hub, scenario, "p99_s", round(ready[max(0, int(len(ready) * 0.99) - 1)], 2), "s")
    rec.add(hub, scenario, "wall_s", round(total, 2), "s")


def api(hub: Hub, method: str, path: str, **kw):
    import httpx
    headers = {**auth(), **kw.pop("headers", {})}
    return httpx.request(method, hub.base + path, headers=headers, timeout=600, **kw)


def count(hub: Hub, state: str) -> int:
    r = api(hub, "GET", f"/hub/api/users?state={state}&limit=1",
            headers={**auth(), "Accept": "application/jupyterhub-pagination+json"})
    r.raise_for_status()
    return r.json()["_pagination"]["total"]


def wait_none_active(hub: Hub, timeout: float = 600) -> float:
    t0 = time.perf_counter()
    while count(hub, "active"):
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"{hub.label}: servers still active after {timeout} s")
        time.sleep(0.5)
    return time.perf_counter() - t0


async def stop_all(hub: Hub, n: int) -> None:
    import httpx
    sem = asyncio.Semaphore(50)
    async with httpx.AsyncClient(base_url=hub.base, headers=auth(), timeout=600) as client:
        async def one(i):
            async with sem:
                await client.delete(f"/hub/api/users/{user_name(i)}/server")
        await asyncio.gather(*(one(i) for i in range(n)))
    wait_none_active(hub)


def time_listing(hub: Hub, rec: Recorder, rounds: int, users: int, n: int) -> None:
    """`GET /hub/api/users?state=active`: as the culler walks it (paginated, following
    `next` at the default page size), and one page of 200."""
    import httpx
    walks, pages_seen, items_seen, singles = [], 0, 0, []
    with httpx.Client(headers=auth(), timeout=600) as client:
        for _ in range(rounds):
            url = f"{hub.base}/hub/api/users?state=active"
            t0 = time.perf_counter()
            pages = items = 0
            while url:
                r = client.get(url, headers={"Accept": "application/jupyterhub-pagination+json"})
                r.raise_for_status()
                body = r.json()
                pages += 1
                items += len(body["items"])
                url = (body["_pagination"]["next"] or {}).get("url")
            walks.append(time.perf_counter() - t0)
            pages_seen, items_seen = pages, items
            t0 = time.perf_counter()
            r = client.get(f"{hub.base}/hub/api/users?state=active&limit=200")
            r.raise_for_status()
            singles.append(time.perf_counter() - t0)
    scenario = f"GET /hub/api/users?state=active, {users:,} users, {n} running"
    rec.add(hub, scenario, "walk_ms", round(statistics.median(walks) * 1000, 1), "ms")
    rec.add(hub, scenario, "walk_pages", pages_seen, "pages")
    rec.add(hub, scenario, "walk_users", items_seen, "users")
    rec.add(hub, scenario, "page200_ms", round(statistics.median(singles) * 1000, 1), "ms")


def culler_pass(hub: Hub, inactive_limit: int) -> float:
    """One `cull_idle` of the real jupyterhub-idle-culler; its seconds."""
    code = (
        "import asyncio, logging, sys, time\n"
        "from jupyterhub_idle_culler import cull_idle\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "t0 = time.perf_counter()\n"
        "asyncio.run(cull_idle(sys.argv[1], sys.argv[2], int(sys.argv[3]),\n"
        "    logging.getLogger('culler'), concurrency=10))\n"
        "print(time.perf_counter() - t0)\n"
    )
    r = subprocess.run([str(hub.venv / "bin" / "python"), "-c", code, f"{hub.base}/hub/api",
                        TOKEN, str(inactive_limit)], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise BenchError(f"{hub.label}: culler failed:\n{r.stderr[-2000:]}")
    return float(r.stdout.strip().splitlines()[-1])


def run_hub(hub: Hub, rec: Recorder, args) -> None:
    n = args.spawns
    log(f"{hub.label}: first start (schema)")
    hub.start()
    hub.stop()
    log(f"{hub.label}: {args.users:,} users into SQLite")
    rec.add(hub, "import", "insert_users_s", round(hub.insert_users(0, args.users), 2), "s")

    # At the hub's default concurrent_spawn_limit.
    hub.spawn_limit = None
    s = hub.start()
    rec.add(hub, f"{args.users:,} users", "startup_first_s", round(s, 3), "s")
    default_label = "default (64)" if hub.key == "ours" else "default (100)"
    log(f"{hub.label}: {n} concurrent spawns, limit {default_label}")
    asyncio.run(spawn_storm(hub, n, default_label, rec))
    asyncio.run(stop_all(hub, n))
    hub.stop()

    # With the limit off.
    hub.spawn_limit = 0
    s = hub.start()
    rec.add(hub, f"{args.users:,} users", "startup_s", round(s, 3), "s")
    time.sleep(args.settle)
    record_rss(rec, hub, f"{args.users:,} users, idle")
    log(f"{hub.label}: {n} concurrent spawns, limit off")
    asyncio.run(spawn_storm(hub, n, "off (0)", rec))
    running = count(hub, "ready")
    rec.add(hub, f"{args.users:,} users, {n} running", "running_servers", running, "servers")
    time.sleep(args.settle)
    record_rss(rec, hub, f"{args.users:,} users, {n} running")
    log(f"{hub.label}: GET /hub/api/users?state=active")
    time_listing(hub, rec, args.rounds, args.users, n)
    log(f"{hub.label}: idle-culler pass, nothing to cull")
    scenario = f"idle-culler pass, {args.users:,} users, {n} running"
    rec.add(hub, scenario, "noop_pass_s", round(culler_pass(hub, 86400), 2), "s")
    log(f"{hub.label}: idle-culler pass culling all {running}")
    rec.add(hub, scenario, "cull_all_pass_s", round(culler_pass(hub, 1), 2), "s")
    rec.add(hub, scenario, "stopped_after_pass_s", round(wait_none_active(hub), 2), "s")
    hub.stop()

    log(f"{hub.label}: {args.big_users - args.users:,} more users")
    rec.add(hub, "import", "insert_more_users_s",
            round(hub.insert_users(args.users, args.big_users), 2), "s")
    s = hub.start()
    rec.add(hub, f"{args.big_users:,} users", "startup_first_s", round(s, 3), "s")
    hub.stop()
    s = hub.start()
    rec.add(hub, f"{args.big_users:,} users", "startup_s", round(s, 3), "s")
    time.sleep(args.settle)
    record_rss(rec, hub, f"{args.big_users:,} users, idle")
    hub.stop()


# --------------------------------------------------------------------------------------
# report: table and plots, from the CSV
# --------------------------------------------------------------------------------------


def read_csv() -> tuple[dict, list[dict]]:
    values: dict[tuple[str, str, str], tuple[float | str, str]] = {}
    with open(OUT / "scale.csv") as f:
        for row in csv.DictReader(f):
            try:
                v: float | str = float(row["value"])
            except ValueError:
                v = row["value"]
            values[(row["hub"], row["scenario"], row["metric"])] = (v, row["unit"])
    with open(OUT / "spawns.csv") as f:
        spawns = list(csv.DictReader(f))
    return values, spawns


def fmt(v) -> str:
    if v is None or v == "":
        return "n/a"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 10:
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def ratio(a, b) -> str:
    if not isinstance(a, float) or not isinstance(b, float) or a == 0:
        return ""
    return f"{b / a:.1f}×"


def table(values: dict, users: int, big: int, n: int) -> tuple[str, list]:
    """The markdown table (hubfleet, JupyterHub, ratio, target) and the bars to plot."""
    def get(hub, scenario, metric):
        return values.get((hub, scenario, metric), (None, ""))[0]

    u, b = f"{users:,}", f"{big:,}"
    lines = ["| | hubfleet | JupyterHub + CHP | JupyterHub / hubfleet | target |",
             "| --- | ---: | ---: | ---: | --- |"]
    plots = []

    def row(label, scenario, metric, target=None, with_ratio=True, plot=None):
        o, j = get("ours", scenario, metric), get("upstream", scenario, metric)
        met = ""
        if target is not None and isinstance(o, float):
            met = f"{target[0]}: " + ("met" if target[1](o) else "**not met**")
        lines.append(f"| {label} | {fmt(o)} | {fmt(j)} | "
                     f"{ratio(o, j) if with_ratio else ''} | {met} |")
        if plot and isinstance(o, float) and isinstance(j, float):
            plots.append((plot, o, j))

    def spawns(scenario, tag, target=False):
        row(f"{tag}: servers ready", scenario, "ready", with_ratio=False)
        row(f"{tag}: 429 (spawn limit)", scenario, "http_429", with_ratio=False)
        row(f"{tag}: errors", scenario, "errors", with_ratio=False,
            target=("0 errors", lambda v: v == 0) if target else None)
        row(f"{tag}: all ready (s)", scenario, "all_ready_s",
            plot=f"all {n:,} ready (s)" if target else None)
        row(f"{tag}: per spawn, p50 (s)", scenario, "p50_s")
        row(f"{tag}: per spawn, p99 (s)", scenario, "p99_s")

    row(f"start-up to first answer, {u} users (s)", f"{u} users", "startup_s",
        plot=f"start-up, {u} users (s)")
    row(f"start-up to first answer, {b} users (s)", f"{b} users", "startup_s",
        target=("< 1 s", lambda v: v < 1.0), plot=f"start-up, {b} users (s)")
    row(f"first start after the import, {b} users (s)", f"{b} users", "startup_first_s")
    row(f"RSS idle, {u} users (MiB, hub + proxy)", f"{u} users, idle", "rss_total_mib")
    row(f"RSS idle, {b} users (MiB, hub + proxy)", f"{b} users, idle", "rss_total_mib")
    spawns(f"{n} concurrent spawns, limit off (0)", f"{n} spawns, limit off", target=True)
    spawns(f"{n} concurrent spawns, limit default (64)", f"{n} spawns, hubfleet's default limit (64)")
    spawns(f"{n} concurrent spawns, limit default (100)",
           f"{n} spawns, JupyterHub's default limit (100)")
    running = f"{u} users, {n} running"
    row(f"RSS, {u} users and {n} running (MiB, hub + proxy)", running, "rss_total_mib",
        target=("< 100 MB", lambda v: v * 1024 * 1024 < 100e6), plot=f"RSS, {n:,} running (MiB)")
    row("… the hub (MiB)", running, "rss_hub_mib")
    row("… the proxy (MiB)", running, "rss_proxy_mib")
    listing = f"GET /hub/api/users?state=active, {u} users, {n} running"
    row("`?state=active`, walked as the culler does (ms)", listing, "walk_ms",
        plot="?state=active walk (ms)")
    row("… pages walked", listing, "walk_pages", with_ratio=False)
    row("`?state=active&limit=200`, one page (ms)", listing, "page200_ms")
    cull = f"idle-culler pass, {u} users, {n} running"
    row("idle-culler pass, nothing to cull (s)", cull, "noop_pass_s",
        plot="culler pass, nothing to cull (s)")
    row(f"idle-culler pass culling all {n} (s)", cull, "cull_all_pass_s",
        plot=f"culler pass culling {n:,} (s)")
    return "\n".join(lines), plots


def svg_bars(plots: list[tuple[str, float, float, str]], path: Path) -> None:
    """Small multiples: one panel per measure, hubfleet and JupyterHub side by side."""
    w, h, cols = 250, 190, 3
    rows = (len(plots) + cols - 1) // cols
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * cols}" height="{h * rows + 30}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<rect x="10" y="8" width="12" height="12" fill="#2a6fbb"/><text x="27" y="19">hubfleet</text>'
           f'<rect x="100" y="8" width="12" height="12" fill="#e07b39"/><text x="117" y="19">'
           'JupyterHub 6 + CHP</text>']
    for k, (title, ours, theirs) in enumerate(plots):
        x0, y0 = (k % cols) * w, 30 + (k // cols) * h
        top = max(ours, theirs) or 1.0
        out.append(f'<text x="{x0 + w / 2}" y="{y0 + 16}" text-anchor="middle" '
                   f'font-weight="bold">{title}</text>')
        base = y0 + h - 25
        for j, (v, color) in enumerate(((ours, "#2a6fbb"), (theirs, "#e07b39"))):
            bh = (h - 70) * v / top
            bx = x0 + 60 + j * 80
            out.append(f'<rect x="{bx}" y="{base - bh:.1f}" width="50" height="{bh:.1f}" fill="{color}"/>')
            out.append(f'<text x="{bx + 25}" y="{base - bh - 4:.1f}" text-anchor="middle">{fmt(v)}</text>')
        out.append(f'<line x1="{x0 + 45}" y1="{base}" x2="{x0 + w - 25}" y2="{base}" stroke="#444"/>')
        if ours and theirs:
            out.append(f'<text x="{x0 + w / 2}" y="{base + 17}" text-anchor="middle" fill="#444">'
                       f'JupyterHub / hubfleet: {theirs / ours:.1f}×</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def svg_spawn_times(spawns: list[dict], path: Path, n: int) -> None:
    """Each ready server's time from its request, sorted: one line per hub and limit."""
    series = {}
    for s in spawns:
        if s["outcome"] == "ready":
            series.setdefault((s["hub"], s["limit"]), []).append(float(s["seconds"]))
    if not series:
        return
    colors = {("ours", "off (0)"): "#2a6fbb", ("upstream", "off (0)"): "#e07b39",
              ("ours", "default (64)"): "#8fb8e6", ("upstream", "default (100)"): "#f2b48c"}
    w, h, left, bottom = 720, 420, 60, 50
    n_max = max(len(v) for v in series.values())
    t_max = max(max(v) for v in series.values()) * 1.05
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{w / 2}" y="18" text-anchor="middle" font-weight="bold">'
           f'Time from its request to ready, per server (sorted), {n:,} concurrent spawns</text>']
    pw, ph = w - left - 20, h - bottom - 40
    for i in range(6):
        t = t_max * i / 5
        y = 30 + ph - ph * i / 5
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{t:.0f} s</text>')
    for i in range(6):
        x = left + pw * i / 5
        out.append(f'<text x="{x:.1f}" y="{30 + ph + 18}" text-anchor="middle">{int(n_max * i / 5)}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">servers ready (rank)</text>')
    legend_y = 40
    for (hub, limit), times in sorted(series.items()):
        times.sort()
        pts = " ".join(f"{left + pw * (i + 1) / n_max:.1f},{30 + ph - ph * t / t_max:.1f}"
                       for i, t in enumerate(times))
        color = colors.get((hub, limit), "#888")
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<rect x="{left + 10}" y="{legend_y - 10}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + 27}" y="{legend_y}">{LABELS[hub]}, limit {limit}: '
                   f'{len(times)} ready</text>')
        legend_y += 18
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def notes() -> str:
    """What the figures mean, written by hand: `notes.md` beside the CSV, if there is one."""
    try:
        return (OUT / "notes.md").read_text().strip() + "\n\n"
    except OSError:
        return ""


def write_doc(body: str) -> None:
    text = DOC.read_text()
    section = SECTION + "\n\n" + body.strip() + "\n"
    pat = re.compile(r"^" + re.escape(SECTION) + r"\s*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text)


def report(args) -> str:
    """The table, with the plots drawn from the CSV."""
    values, spawns = read_csv()
    body, plots = table(values, args.users, args.big_users, args.spawns)
    svg_bars(plots, OUT / "summary.svg")
    svg_spawn_times(spawns, OUT / "spawn-times.svg", args.spawns)
    return body


def versions(venv: Path, binary: Path, chp: Path) -> dict[str, str]:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"
    v = {"jupyterhub": run([str(venv / "bin" / "python"), "-c",
                            "import jupyterhub; print(jupyterhub.__version__)"]),
         "culler": run([str(venv / "bin" / "python"), "-c",
                        "import importlib.metadata as m; print(m.version('jupyterhub-idle-culler'))"]),
         "hubfleet": run([str(binary), "--version"]).replace("hubfleet", "").strip(),
         "node": run(["node", "--version"]).lstrip("v")}
    try:
        v["chp"] = json.loads((chp.resolve().parent.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        v["chp"] = "?"
    return v


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def ensure_binary(given: Path | None) -> tuple[Path, str]:
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    if given is not None:
        return given.resolve(), f"given binary {given} (HEAD {git})"
    binary = REPO / "target" / "release" / "hubfleet"
    log("cargo build --release -p hubfleet")
    if subprocess.run(["cargo", "build", "--release", "-p", "hubfleet"], cwd=REPO).returncode != 0:
        raise BenchError("cargo build --release -p hubfleet failed")
    return binary, f"release build of commit {git}"


def ensure_chp() -> Path:
    """configurable-http-proxy from the tests' npm fixture (scripts/test installs it too)."""
    chp = CHP_FIXTURE / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        log(f"npm ci in {CHP_FIXTURE} (configurable-http-proxy)")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CHP_FIXTURE, check=True)
    return chp


def build_tiny(dest: Path) -> Path:
    out = dest / "tiny-server"
    subprocess.run(["rustc", "-O", "--edition", "2021", "-o", str(out),
                    str(HERE / "tiny_server.rs")], check=True)
    return out


def reexec_with_venv() -> None:
    """The client needs httpx (and the culler's imports): use the hubs' venv's Python."""
    try:
        import httpx  # noqa: F401
        return
    except ImportError:
        pass
    venv = os.environ.get("HUBFLEET_PYTHON_ENV")
    for i, a in enumerate(sys.argv):
        if a == "--venv" and i + 1 < len(sys.argv):
            venv = sys.argv[i + 1]
        elif a.startswith("--venv="):
            venv = a.split("=", 1)[1]
    python = Path(venv or "", "bin", "python")
    # A venv's python is a symlink to the system's: compare the paths, not what they resolve to.
    if venv and python.exists() and not os.environ.get("HUBFLEET_BENCH_REEXEC"):
        os.environ["HUBFLEET_BENCH_REEXEC"] = "1"
        os.environ.setdefault("HUBFLEET_BENCH_CMD", " ".join(["python3"] + sys.argv))
        os.execv(str(python), [str(python)] + sys.argv)
    raise SystemExit("error: httpx is missing: run with the Python of a venv that has "
                     "jupyterhub and httpx, or pass --venv / set HUBFLEET_PYTHON_ENV")


def main() -> int:
    global OUT
    reexec_with_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=os.environ.get("HUBFLEET_PYTHON_ENV") or None,
                    help="venv with jupyterhub and jupyterhub-idle-culler ($HUBFLEET_PYTHON_ENV)")
    ap.add_argument("--hubfleet", type=Path, default=None,
                    help="hubfleet binary (default: cargo build --release, target/release/hubfleet)")
    ap.add_argument("--quick", action="store_true",
                    help="a smaller run (200 spawns, 2,000 and 20,000 users, 2 rounds) into "
                         "target/bench-scale-quick/, not the docs")
    ap.add_argument("--spawns", type=int, default=None, help="concurrent spawns (1,000)")
    ap.add_argument("--users", type=int, default=None, help="users for the spawns (10,000)")
    ap.add_argument("--big-users", type=int, default=None, help="users for start-up (100,000)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the listing timings (5)")
    ap.add_argument("--settle", type=float, default=None, help="seconds before reading RSS (5)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"where the CSV, plots and run.json go (default {OUT.relative_to(REPO)})")
    ap.add_argument("--only", choices=["ours", "upstream"], help="run one hub only")
    ap.add_argument("--replot", action="store_true",
                    help="redo the plots and the doc section from the CSV; run nothing")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    sizes = ((200, 2_000, 20_000, 2, 2.0) if args.quick
             else (1000, 10_000, 100_000, 5, 5.0))
    for name, default in zip(("spawns", "users", "big_users", "rounds", "settle"), sizes):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.users < args.spawns or args.big_users < args.users:
        ap.error("need --spawns <= --users <= --big-users")
    if args.out is not None:
        OUT = args.out.resolve()
    elif args.quick:
        OUT = QUICK_OUT
        args.no_doc = True

    meta_path = OUT / "run.json"
    if args.replot:
        meta = json.loads(meta_path.read_text())
        for name, value in meta.get("sizes", {}).items():
            setattr(args, name, value)
    else:
        if args.venv is None:
            ap.error("no venv: pass --venv or set HUBFLEET_PYTHON_ENV")
        venv = args.venv.resolve()
        binary, provenance = ensure_binary(args.hubfleet)
        chp = ensure_chp()
        nofile = raise_nofile()
        tmp = Path(tempfile.mkdtemp(prefix="hubfleet-bench-scale-"))
        log(f"temp dir {tmp}; open files {nofile}")
        tiny = build_tiny(tmp)
        rec = Recorder()
        started = _dt.datetime.now(_dt.timezone.utc)
        load_start = load1()
        hubs: list[Hub] = []
        if args.only in (None, "ours"):
            hubs.append(Ours(tmp / "ours", venv, tiny, binary))
        if args.only in (None, "upstream"):
            hubs.append(Upstream(tmp / "upstream", venv, tiny, chp))
        failed = None
        try:
            for hub in hubs:
                try:
                    run_hub(hub, rec, args)
                finally:
                    hub.stop()
                    kill_under(hub.root)
        except (BenchError, KeyboardInterrupt) as e:
            failed = e
            log(f"ABORTED: {e}")
        finally:
            kill_under(tmp)
            if args.only and not failed:
                rec.keep_others(args.only)
            rec.write()
            if failed or args.keep:
                log(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        if failed:
            return 1
        meta = {
            "command": os.environ.get("HUBFLEET_BENCH_CMD") or " ".join(sys.argv),
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "ended": _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M UTC"),
            "load_start": load_start, "load_end": load1(),
            "provenance": provenance, "versions": versions(venv, binary, chp),
            "machine": machine(), "nofile": nofile,
            "sizes": {"spawns": args.spawns, "users": args.users, "big_users": args.big_users,
                      "rounds": args.rounds},
        }
        if args.only and meta_path.exists():
            # The other hub's figures come from an earlier run: say which.
            old = json.loads(meta_path.read_text())
            kept = dict(old.get("kept", {}))
            for key in LABELS:
                if key != args.only and key not in kept:
                    kept[key] = {k: old.get(k) for k in ("command", "started", "ended",
                                                          "provenance", "load_start",
                                                          "load_end")}
            kept.pop(args.only, None)
            meta["kept"] = kept
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")

    body = report(args)
    v, m = meta["versions"], meta["machine"]
    n, u, b = f"{args.spawns:,}", f"{args.users:,}", f"{args.big_users:,}"
    text = (
        f"{n} concurrent starts through the REST API, then {u} and {b} users in the "
        f"database, for hubfleet and JupyterHub {v['jupyterhub']} (with configurable-http-proxy "
        f"{v['chp']}) in one run, one after the other. Both start the same tiny server "
        "(`bench/scale/tiny_server.rs`: it answers the readiness probe and posts its activity), "
        "so a spawn costs what the hub does; JupyterHub uses `SimpleLocalProcessSpawner` with "
        "that command, hubfleet its local spawner (which, as root, starts each server in a "
        "mount namespace of its own for the shared folder). Users are written straight into "
        "each hub's SQLite database with the hub stopped (hubfleet's `users` table; "
        "JupyterHub's `users` with a `cookie_id` and the `user` role, as its API leaves them). "
        "Each start is `POST /hub/api/users/<name>/server` with an admin service's token, "
        "followed to ready on the progress stream when it answers 202; its time runs from its "
        "own request. Start-up is the time from exec to the first 200 of `GET /hub/api/` "
        "(through CHP for JupyterHub), on the second start after the import. The culler is "
        "the real `jupyterhub-idle-culler` "
        f"{v['culler']} (`cull_idle`, concurrency 10, z2jh's). RSS is VmRSS; for JupyterHub "
        "the hub plus CHP's node process.\n\n"
        "The machine is shared (other engineers compile on the same cores while this runs), so "
        "absolute figures are noisy: read the ratios, measured side by side in one run, and the "
        "load average in the CSV. Ratios are JupyterHub's figure over hubfleet's (above 1: "
        "hubfleet is faster or smaller).\n\n"
        + body + "\n\n"
        + notes() +
        "![Summary: hubfleet and JupyterHub side by side](benchmarks/scale/summary.svg)\n\n"
        "![Each server's time to ready, sorted](benchmarks/scale/spawn-times.svg)\n\n"
        "Data: [scale.csv](benchmarks/scale/scale.csv) (every figure, with the 1-minute load "
        "average when it was taken) and [spawns.csv](benchmarks/scale/spawns.csv) (every "
        "start).\n\n"
        f"Command (from the repository root): `{meta['command']}`\n\n"
        + "".join(
            f"{LABELS[key]}'s figures are from the run before, kept in the CSV: `{k['command']}` "
            f"({k['started']} to {k['ended']}, load average {k['load_start']} to "
            f"{k['load_end']}).\n\n"
            for key, k in meta.get("kept", {}).items())
        +
        f"Run: {meta['started']} to {meta['ended']}; hubfleet {v['hubfleet']} "
        f"({meta['provenance']}); JupyterHub {v['jupyterhub']}, configurable-http-proxy "
        f"{v['chp']} on node {v['node']}.\n\n"
        f"Machine: nproc {m['nproc']}, CPU `{m['cpu']}`, memory {m['mem']}, Linux {m['kernel']}; "
        f"open files {meta['nofile']} per process (hard limit {m['nofile'].split('/')[1]}), "
        f"pid_max {m['pid_max']}, ephemeral ports {m['ports'][0]}–{m['ports'][1]}; 1-minute "
        f"load average {meta['load_start']} at the start, {meta['load_end']} at the end (other "
        "work on the machine shows there; the CSV has it for every figure).\n"
    )
    print(SECTION + "\n\n" + text)
    if not args.no_doc:
        write_doc(text)
        log(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
