#!/usr/bin/env python3
"""Spawn benchmark: time from "press Start" to a ready JupyterLab.

Runs, in one process and interleaved round by round, the same client flow
against

  (a) hubfleet (`hubfleet serve`, local-process spawner, built-in proxy), and
  (b) upstream JupyterHub (from PyPI) with configurable-http-proxy (from npm),
      SimpleLocalProcessSpawner,

and reports the spawn time (median, min, max) of each hub, the ratio of the
medians, and the resident memory (VmRSS) of each hub at idle.

Client flow per round, identical for both hubs, with a fresh user name per
round so that every spawn is a cold spawn into a fresh home:

  GET  /hub/login                  (sets the _xsrf cookie)
  POST /hub/login                  (username, password, _xsrf; 302, not followed)
  GET  /hub/home                   (post-login _xsrf cookie)
  t0
  GET  /hub/spawn                  (not followed)
  GET  /hub/api/users/<u>          every 50 ms until "server" is set
  GET  /user/<u>/lab               following redirects (OAuth), every 50 ms
                                   until 200 with the JupyterLab page
  t1
  DELETE /hub/api/users/<u>/server, then GET /hub/api/users/<u> until
  stopped and the server process is gone.

Run it with the Python of a venv that has jupyterhub and jupyterlab (for
`requests`); bench/spawn/run.sh does that. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SECTION = "## Spawn: Start to ready JupyterLab"
DOC_INTRO = (
    "# Benchmarks\n\nFigures from runs on the machine named under each table. "
    "Each section gives the command that produced it.\n"
)
POLL = 0.05  # seconds between polls
LAB_MARKER = "jupyter-config-data"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def procs_under(root: Path) -> list[tuple[int, str]]:
    """Processes whose cwd, command line or environment points under `root`."""
    root_s = str(root)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == me:
            continue
        hit = False
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            hit = cwd == root_s or cwd.startswith(root_s + "/")
        except OSError:
            pass
        cmdline = ""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if not hit and root_s in cmdline:
            hit = True
        if not hit:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    hit = root_s.encode() in f.read()
            except OSError:
                pass
        if hit:
            found.append((pid, cmdline))
    return found


def kill_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------------------
# hubs
# --------------------------------------------------------------------------------------


class Hub:
    key = ""
    label = ""

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "hub.log"
        self.base = ""
        self.start_s: float | None = None

    def command(self) -> tuple[list[str], Path]:
        raise NotImplementedError

    def start(self, timeout: float) -> None:
        cmd, cwd = self.command()
        log(f"{self.label}: starting: {' '.join(cmd)} (cwd {cwd})")
        logf = open(self.log_path, "wb")
        env = dict(os.environ)
        env["HUBFLEET_BENCH_ROOT"] = str(self.root)
        env["PATH"] = f"{self.venv}/bin:{env.get('PATH', '/usr/bin:/bin')}"  # as if activated
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        logf.close()
        deadline = t0 + timeout
        last = ""
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.label} exited with {self.proc.returncode} during start-up; "
                    f"log tail:\n{self.log_tail()}"
                )
            try:
                r = requests.get(self.base + "/hub/login", timeout=5, allow_redirects=False)
                last = f"{r.status_code}"
                if r.status_code == 200:
                    self.start_s = time.perf_counter() - t0
                    log(f"{self.label}: up in {self.start_s:.2f} s at {self.base}")
                    return
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(POLL)
        raise BenchError(
            f"{self.label}: GET /hub/login not 200 after {timeout} s (last: {last}); "
            f"log tail:\n{self.log_tail()}"
        )

    def rss(self) -> dict[str, int | None]:
        raise NotImplementedError

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        log(f"{self.label}: SIGTERM to pid {self.proc.pid}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            log(f"{self.label}: still running after 20 s, SIGKILL to its process group")
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


class Ours(Hub):
    key = "ours"
    label = "hubfleet"

    def __init__(self, root: Path, binary: Path, venv: Path, port: int):
        super().__init__(root)
        self.binary = binary
        self.venv = venv
        self.port = port
        self.base = f"http://127.0.0.1:{port}"

    def command(self):
        data = self.root / "data"
        cfg = self.root / "hub.yaml"
        cfg.write_text(
            "hub:\n"
            "  config:\n"
            "    JupyterHub:\n"
            "      authenticator_class: dummy\n"
            "    Authenticator:\n"
            "      admin_users: [admin]\n"
            "singleuser:\n"
            "  defaultUrl: /lab\n"
            "hubfleet:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            f"  data_dir: {data}\n"
            "  local:\n"
            f"    python_env: {self.venv}\n"
        )
        return [str(self.binary), "serve", "--config", str(cfg)], self.root

    def rss(self):
        return {"hub": rss_kib(self.proc.pid)}


class Upstream(Hub):
    key = "upstream"
    label = "JupyterHub"

    def __init__(self, root: Path, venv: Path, chp: Path, port: int, hub_port: int, api_port: int):
        super().__init__(root)
        self.venv = venv
        self.chp = chp
        self.port, self.hub_port, self.api_port = port, hub_port, api_port
        self.base = f"http://127.0.0.1:{port}"

    def command(self):
        homes = self.root / "homes"
        cfg = self.root / "jupyterhub_config.py"
        cfg.write_text(
            "c = get_config()  # noqa\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            "c.Authenticator.admin_users = {'admin'}\n"
            "c.JupyterHub.spawner_class = 'jupyterhub.spawner.SimpleLocalProcessSpawner'\n"
            f"c.SimpleLocalProcessSpawner.home_dir_template = {str(homes) + '/{username}'!r}\n"
            f"c.Spawner.cmd = [{str(self.venv / 'bin' / 'jupyterhub-singleuser')!r}]\n"
            "c.Spawner.args = ['--allow-root']\n"
            "c.Spawner.default_url = '/lab'\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'\n"
            "c.JupyterHub.hub_ip = '127.0.0.1'\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            f"c.ConfigurableHTTPProxy.command = [{str(self.chp)!r}]\n"
            f"c.ConfigurableHTTPProxy.pid_file = {str(self.root / 'jupyterhub-proxy.pid')!r}\n"
            f"c.JupyterHub.db_url = 'sqlite:///{self.root / 'jupyterhub.sqlite'}'\n"
            f"c.JupyterHub.cookie_secret_file = {str(self.root / 'jupyterhub_cookie_secret')!r}\n"
            "c.JupyterHub.cleanup_servers = True\n"
            "c.JupyterHub.cleanup_proxy = True\n"
        )
        return [str(self.venv / "bin" / "jupyterhub"), "-f", str(cfg)], self.root

    def chp_pid(self) -> int | None:
        try:
            pid = int((self.root / "jupyterhub-proxy.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"configurable-http-proxy" not in f.read():
                    return None
        except OSError:
            return None
        return pid

    def rss(self):
        chp = self.chp_pid()
        return {"hub": rss_kib(self.proc.pid), "proxy": rss_kib(chp) if chp else None}


# --------------------------------------------------------------------------------------
# client flow
# --------------------------------------------------------------------------------------


class Client:
    def __init__(self, hub: Hub, user: str, timeout: float):
        self.hub = hub
        self.user = user
        self.timeout = timeout
        self.s = requests.Session()
        self.s.trust_env = False
        # page loads look like a browser's navigations
        self.s.headers.update({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"})
        self.trace: list[str] = []
        self.logged_in = False

    def _note(self, r: requests.Response) -> None:
        hist = " -> ".join(f"{h.status_code} {h.url}" for h in r.history)
        self.trace.append(
            f"{r.request.method} {r.url} -> {r.status_code}"
            + (f" (via {hist})" if hist else "")
            + (f" Location: {r.headers['Location']}" if "Location" in r.headers else "")
        )
        del self.trace[:-30]

    def xsrf(self) -> str | None:
        best = None
        for c in self.s.cookies:
            if c.name == "_xsrf" and (c.path or "/").startswith("/hub"):
                best = c.value
        if best is None:
            for c in self.s.cookies:
                if c.name == "_xsrf":
                    best = c.value
        return best

    def _headers(self) -> dict[str, str]:
        """Headers of a browser's same-origin fetch() to the API (JupyterHub checks XSRF then)."""
        h = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin"}
        x = self.xsrf()
        if x:
            h["X-XSRFToken"] = x
        return h

    def get(self, path: str, **kw) -> requests.Response:
        r = self.s.get(self.hub.base + path, timeout=kw.pop("timeout", 60), **kw)
        self._note(r)
        return r

    def fail(self, what: str) -> BenchError:
        return BenchError(
            f"{self.hub.label}, user {self.user}: {what}\n  requests (latest last):\n    "
            + "\n    ".join(self.trace)
            + f"\n  hub log tail:\n{self.hub.log_tail()}"
        )

    def login(self) -> None:
        r = self.get("/hub/login")
        if r.status_code != 200:
            raise self.fail(f"GET /hub/login: {r.status_code}")
        data = {"username": self.user, "password": "bench"}
        if self.xsrf():
            data["_xsrf"] = self.xsrf()
        r = self.s.post(self.hub.base + "/hub/login", data=data, allow_redirects=False, timeout=60)
        self._note(r)
        if r.status_code not in (302, 303):
            raise self.fail(f"POST /hub/login: {r.status_code} (expected 302)")
        self.logged_in = True
        r = self.get("/hub/home")
        if r.status_code != 200:
            raise self.fail(f"GET /hub/home after login: {r.status_code}")

    def model(self) -> dict:
        r = self.get(f"/hub/api/users/{self.user}", headers=self._headers())
        if r.status_code != 200:
            raise self.fail(f"GET /hub/api/users/{self.user}: {r.status_code} {r.text[:300]!r}")
        return r.json()

    def spawn(self) -> float:
        """Start the server; return seconds from GET /hub/spawn to JupyterLab 200."""
        t0 = time.perf_counter()
        deadline = t0 + self.timeout
        r = self.get("/hub/spawn", allow_redirects=False, timeout=self.timeout)
        if r.status_code not in (200, 302, 303):
            raise self.fail(f"GET /hub/spawn: {r.status_code}")
        while True:
            m = self.model()
            if m.get("server"):
                break
            if time.perf_counter() > deadline:
                raise self.fail(f"server not ready after {self.timeout} s; last model: {json.dumps(m)[:500]}")
            time.sleep(POLL)
        lab = f"/user/{self.user}/lab"
        while True:
            try:
                r = self.get(lab, timeout=max(1.0, deadline - time.perf_counter()))
                if r.status_code == 200 and LAB_MARKER in r.text:
                    break
                last = f"{r.status_code} at {r.url}"
            except requests.RequestException as e:
                last = repr(e)
            if time.perf_counter() > deadline:
                raise self.fail(f"GET {lab} not a JupyterLab page after {self.timeout} s (last: {last})")
            time.sleep(POLL)
        return time.perf_counter() - t0

    def server_pids(self) -> list[int]:
        home = f"/homes/{self.user}"
        return [pid for pid, _ in procs_under(self.hub.root) if pid != self.hub.proc.pid
                and (_cwd(pid).endswith(home) or home + "/" in _cwd(pid))]

    def stop_server(self, timeout: float = 60) -> float:
        """DELETE the server and wait until the API says stopped and the process is gone."""
        t0 = time.perf_counter()
        r = self.s.delete(self.hub.base + f"/hub/api/users/{self.user}/server",
                          headers=self._headers(), timeout=timeout)
        self._note(r)
        if r.status_code not in (202, 204, 400, 404):
            raise self.fail(f"DELETE /hub/api/users/{self.user}/server: {r.status_code} {r.text[:300]!r}")
        while True:
            m = self.model()
            if not m.get("server") and not m.get("pending") and not self.server_pids():
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise self.fail(f"server not stopped after {timeout} s: {json.dumps(m)[:300]}, "
                                f"pids {self.server_pids()}")
            time.sleep(POLL)


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------
# setup helpers
# --------------------------------------------------------------------------------------


def ensure_binary(path: Path | None, build: bool) -> tuple[Path, str]:
    """The hubfleet binary and a note on where it came from.

    Without --hubfleet, `cargo build --release -p hubfleet` runs first (a no-op when up
    to date), so the binary is that of the work tree now. If that build fails (others may
    be mid-edit) an existing binary is used and the note says so.
    """
    if path is not None:
        if not path.exists():
            raise BenchError(f"{path} not found")
        return path, f"given binary {path}"
    binary = REPO / "target" / "release" / "hubfleet"
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates",
                       "Cargo.toml", "Cargo.lock"], capture_output=True, text=True).stdout.strip():
        git += " with uncommitted changes in crates/"
    if build:
        log("building hubfleet: cargo build --release -p hubfleet (may wait on the cargo lock)")
        r = subprocess.run(["cargo", "build", "--release", "-p", "hubfleet"], cwd=REPO)
        if r.returncode == 0:
            return binary, f"release build of commit {git}"
        if not binary.exists():
            raise BenchError("cargo build --release -p hubfleet failed and there is no binary")
        log("WARNING: cargo build failed; using the existing target/release/hubfleet")
    elif not binary.exists():
        raise BenchError(f"{binary} not found (and --no-build)")
    mtime = _dt.datetime.fromtimestamp(binary.stat().st_mtime, _dt.timezone.utc)
    return binary, f"existing release binary built {mtime:%Y-%m-%d %H:%M} UTC, not rebuilt (HEAD {git})"


def ensure_chp() -> Path:
    chp = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        log(f"installing configurable-http-proxy: npm install --prefix {HERE} configurable-http-proxy")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(HERE),
                        "configurable-http-proxy"], check=True)
    return chp


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "mem": mem,
            "kernel": platform.release()}


def versions(venv: Path, binary: Path) -> dict[str, str]:
    out = {}

    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"

    out["jupyterhub"] = run([str(venv / "bin" / "python"), "-c",
                             "import jupyterhub; print(jupyterhub.__version__)"])
    out["jupyterlab"] = run([str(venv / "bin" / "python"), "-c",
                             "import jupyterlab; print(jupyterlab.__version__)"])
    out["python"] = run([str(venv / "bin" / "python"), "-c",
                         "import platform; print(platform.python_version())"])
    try:
        out["chp"] = json.loads((HERE / "node_modules" / "configurable-http-proxy" / "package.json")
                                .read_text())["version"]
    except (OSError, ValueError, KeyError):
        out["chp"] = "?"
    out["node"] = run(["node", "--version"]).lstrip("v")
    out["hubfleet"] = run([str(binary), "--version"]).replace("hubfleet", "").strip()
    return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def total_kib(d: dict) -> int | None:
    vals = list(d.values())
    return None if any(v is None for v in vals) else sum(vals)


def render(res: dict, v: dict, rounds: int) -> str:
    o, u = res["ours"], res["upstream"]
    ot, ut = o["times"], u["times"]

    def stat(ts, fn):
        return fn(ts) if ts else None

    def s(x):
        return "n/a" if x is None else f"{x:.2f}"

    rows = []
    up_label = f"JupyterHub {v['jupyterhub']} + CHP {v['chp']}"
    rows.append(f"| | hubfleet | {up_label} | ratio (JupyterHub / hubfleet) |")
    rows.append("| --- | ---: | ---: | ---: |")
    for name, fn in (("median", statistics.median), ("min", min), ("max", max)):
        a, b = stat(ot, fn), stat(ut, fn)
        rows.append(f"| Start → ready JupyterLab, {name} (s) | {s(a)} | {s(b)} | {ratio(b, a)} |")
    rows.append(f"| successful spawns | {len(ot)}/{rounds} | {len(ut)}/{rounds} | |")
    rows.append(f"| hub start-up to login page (s) | {s(o['start_s'])} | {s(u['start_s'])} | "
                f"{ratio(u['start_s'], o['start_s'])} |")
    for when, key in (("at idle after start-up", "rss_idle"), (f"at idle after the rounds", "rss_after")):
        a, b = o[key], u[key]
        at, bt = total_kib(a), total_kib(b)
        rows.append(
            f"| RSS {when} (MiB) | {mib(at)} | {mib(bt)} "
            f"(hub {mib(b.get('hub'))} + proxy {mib(b.get('proxy'))}) | {ratio(bt, at)} |"
        )
    per = "\n".join(
        f"- {lab}: " + ", ".join(f"{t:.2f}" for t in r["times"]) + " s"
        + (f"; failed rounds: {', '.join(r['failed'])}" if r["failed"] else "")
        for lab, r in (("hubfleet", o), (up_label, u))
    )
    return "\n".join(rows) + "\n\nPer-round spawn times (in run order):\n\n" + per + "\n"


def write_doc(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else DOC_INTRO
    section = SECTION + "\n\n" + body.strip() + "\n"
    pat = re.compile(r"^" + re.escape(SECTION) + r"\s*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(text):
        text = pat.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed spawns per hub (default 5)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed spawns per hub before the rounds, to warm the page cache (default 1)")
    ap.add_argument("--venv", type=Path, default=os.environ.get("HUBFLEET_PYTHON_ENV") or None,
                    help="venv with jupyterhub + jupyterlab (default: $HUBFLEET_PYTHON_ENV)")
    ap.add_argument("--hubfleet", type=Path, default=None,
                    help="hubfleet binary (default: target/release/hubfleet, built first with cargo)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo build; use target/release/hubfleet as it is")
    ap.add_argument("--ours-port", type=int, default=18200)
    ap.add_argument("--upstream-port", type=int, default=18100)
    ap.add_argument("--upstream-hub-port", type=int, default=18181)
    ap.add_argument("--upstream-api-port", type=int, default=18101)
    ap.add_argument("--timeout", type=float, default=180, help="seconds allowed for one spawn")
    ap.add_argument("--idle-settle", type=float, default=3,
                    help="seconds to wait before reading RSS at idle (default 3)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    args = ap.parse_args()

    if args.venv is None:
        ap.error("no venv: pass --venv or set HUBFLEET_PYTHON_ENV (bench/spawn/run.sh makes one)")
    venv = args.venv.resolve()
    for tool in ("jupyterhub", "jupyterhub-singleuser", "jupyter-lab"):
        if not (venv / "bin" / tool).exists():
            raise BenchError(f"{venv}/bin/{tool} missing: install jupyterhub and jupyterlab there")
    ports = [args.ours_port, args.upstream_port, args.upstream_hub_port, args.upstream_api_port]
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise BenchError(f"port(s) {busy} on 127.0.0.1 in use; choose others with --*-port")

    binary, provenance = ensure_binary(args.hubfleet, build=not args.no_build)
    binary = binary.resolve()
    chp = ensure_chp()
    cmd_line = os.environ.get("HUBFLEET_BENCH_CMD") or " ".join(
        ["python", os.path.relpath(__file__, REPO)] + sys.argv[1:])

    load_start = open("/proc/loadavg").read().split()[0]
    tmp = Path(tempfile.mkdtemp(prefix="hubfleet-bench-spawn-"))
    log(f"temp dir {tmp}")
    hubs: list[Hub] = [
        Ours(tmp / "ours", binary, venv, args.ours_port),
        Upstream(tmp / "upstream", venv, chp, args.upstream_port,
                 args.upstream_hub_port, args.upstream_api_port),
    ]
    clients: list[Client] = []
    res = {h.key: {"times": [], "failed": [], "start_s": None, "rss_idle": {}, "rss_after": {},
                   "warmup": []} for h in hubs}
    errors: list[str] = []
    ok = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    def one(h: Hub, user: str, tag: str):
        c = Client(h, user, args.timeout)
        clients.append(c)
        try:
            c.login()
            dt = c.spawn()
            log(f"{h.label} {tag} {user}: {dt:.2f} s")
            st = c.stop_server()
            log(f"{h.label} {user}: stopped in {st:.2f} s")
            return dt
        except (BenchError, requests.RequestException) as e:
            msg = str(e) if isinstance(e, BenchError) else c.fail(repr(e)).args[0]
            log(f"FAILED: {msg}")
            errors.append(msg)
            try:
                if c.logged_in:
                    c.stop_server()
            except Exception as e2:  # noqa: BLE001
                errors.append(f"{h.label} {user}: stop after failure also failed: {e2}")
            return None

    try:
        for h in hubs:
            h.start(timeout=120)
            res[h.key]["start_s"] = h.start_s
        time.sleep(args.idle_settle)
        for h in hubs:
            res[h.key]["rss_idle"] = h.rss()
            log(f"{h.label}: RSS at idle {h.rss()}")
        for w in range(1, args.warmup + 1):
            for h in hubs:
                dt = one(h, f"warmup{w}", "warm-up")
                if dt is not None:
                    res[h.key]["warmup"].append(dt)
        for i in range(1, args.rounds + 1):
            for h in hubs:  # interleaved: A B, A B, ...
                dt = one(h, f"bench{i}", f"round {i}/{args.rounds}")
                if dt is None:
                    res[h.key]["failed"].append(f"bench{i}")
                else:
                    res[h.key]["times"].append(dt)
        time.sleep(args.idle_settle)
        for h in hubs:
            res[h.key]["rss_after"] = h.rss()
            log(f"{h.label}: RSS after rounds {res[h.key]['rss_after']}")
        ok = True
    except BenchError as e:
        errors.append(str(e))
        log(f"ABORTED: {e}")
    except KeyboardInterrupt as e:
        errors.append(f"interrupted ({e})")
        log(f"interrupted ({e})")
    finally:
        cleanup(hubs, clients, tmp, keep=args.keep or bool(errors))

    if not ok:
        print("\n\n".join(errors), file=sys.stderr)
        return 1

    load_end = open("/proc/loadavg").read().split()[0]
    v = versions(venv, binary)
    m = machine()
    table = render(res, v, args.rounds)
    warm = "; ".join(f"{lab} {', '.join(f'{t:.2f}' for t in res[k]['warmup'])} s"
                     for k, lab in (("ours", "hubfleet"), ("upstream", "JupyterHub")) if res[k]["warmup"])
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        "Time from `GET /hub/spawn` (the Start button) to `GET /user/<name>/lab` answering 200 with the "
        "JupyterLab page, following the OAuth redirects with the browser session's cookies, "
        "polling `GET /hub/api/users/<name>` and then the lab URL every 50 ms. Each round logs in a new "
        "user, so every spawn is a cold start of a new server in a fresh home; the two hubs take turns "
        f"(hubfleet, JupyterHub, hubfleet, …) in one run. {args.warmup} untimed warm-up spawn(s) per hub "
        "come first" + (f" ({warm})" if warm else "") + ". Both hubs run the same "
        "`jupyterhub-singleuser` from the same venv on loopback; JupyterHub uses "
        "`SimpleLocalProcessSpawner` and configurable-http-proxy. RSS is VmRSS from "
        "`/proc/<pid>/status`; for JupyterHub it is the hub process plus the proxy's node process.\n\n"
        + table
        + "\n"
        f"Command (from the repository root): `{cmd_line}`\n\n"
        f"Run: {when}; hubfleet {v['hubfleet']} ({provenance}); "
        f"JupyterHub {v['jupyterhub']}, configurable-http-proxy {v['chp']} on node {v['node']}, "
        f"JupyterLab {v['jupyterlab']}, Python {v['python']}.\n\n"
        f"Machine: nproc {m['nproc']}, CPU `{m['cpu']}`, memory {m['mem']}, Linux {m['kernel']}; 1-minute load average {load_start} at the start, {load_end} at the end "
        "(other work on the machine shows there).\n"
    )
    print(SECTION + "\n\n" + body)
    if errors:
        print("Errors during the run:\n\n" + "\n\n".join(errors), file=sys.stderr)
    if not args.no_doc:
        write_doc(args.doc, body)
        log(f"wrote {args.doc}")
    return 0 if not errors else 2


def cleanup(hubs: list[Hub], clients: list[Client], tmp: Path, keep: bool) -> None:
    log("cleaning up: stopping servers through the API")
    for c in clients:
        if not c.logged_in or c.hub.proc is None or c.hub.proc.poll() is not None:
            continue
        try:
            m = c.model()
            if m.get("server") or m.get("pending"):
                c.stop_server(timeout=30)
        except Exception as e:  # noqa: BLE001
            log(f"  {c.hub.label} {c.user}: stop failed: {e}")
    for h in hubs:
        try:
            h.stop()
        except Exception as e:  # noqa: BLE001
            log(f"  {h.label}: stop failed: {e}")
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 2)):
        left = procs_under(tmp)
        if not left:
            break
        for pid, cmd in left:
            log(f"  leftover pid {pid}: {cmd[:160]} -> {signal.Signals(sig).name}")
        kill_pids([p for p, _ in left], sig)
        end = time.time() + wait
        while time.time() < end and procs_under(tmp):
            time.sleep(0.1)
    left = procs_under(tmp)
    if left:
        log(f"  STILL RUNNING: {left}")
    if keep:
        log(f"kept {tmp} (logs: */hub.log, ours/data/logs, upstream/homes)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
