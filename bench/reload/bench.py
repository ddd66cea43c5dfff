#!/usr/bin/env python3
"""Config changes and binder launches: how fast a change reaches users, and what a cached binder launch saves.

Part 1, a profile change reaches users (hubfleet beside upstream JupyterHub, in one run,
taking turns round by round: hubfleet, JupyterHub, hubfleet, ...).

  Set-up, per hub: a user `viewer` logs in with a browser-like session (dummy
  authenticator); the user `keeper` gets a server (real jupyterhub-singleuser with JupyterLab)
  through the REST API (admin service token), and its process ids are noted (processes whose
  working directory is its home).

  Each round adds one new entry (a unique display name) to the hub's list of profiles:

  (a) hubfleet (`hubfleet serve --config hub.yaml`): a new entry in `singleuser.profileList`.
      t0 = the new values file is renamed over the old one (as editors save); the hub's file
      watch reloads it, no restart.
  (b) JupyterHub (venv) + configurable-http-proxy (CHP): `profile_list` is KubeSpawner's; the
      local spawner (SimpleLocalProcessSpawner) has no profiles, so the same change is a new
      <option> in `c.Spawner.options_form` in jupyterhub_config.py, which JupyterHub reads at
      start only. t0 = the new file is renamed over the old one; then the hub is restarted:
      SIGTERM, wait for it to exit, start it again. CHP is started by this script and left
      running (`c.ConfigurableHTTPProxy.should_start = False`), and `cleanup_servers = False`,
      so running servers and their routes outlive the restart.

  t1 = `GET /hub/spawn` as `viewer` (through the hub's public port; redirects not followed),
  polled every 20 ms, answers 200 with the new display name in the page (the options form).
  After each round: `keeper`'s server processes are the same (same pids, alive), the hub
  still lists its server, and `GET /user/keeper/api` answers 200 through the proxy.

Part 2, binder: first launch vs cached relaunch (hubfleet only: upstream BinderHub needs
Kubernetes and a container registry). A local git repository holds `requirements.txt`
(`pyjokes`, a small pure-Python package from PyPI, checked to be absent from the base venv),
a notebook and a file that each round changes and commits, so every round's commit is new.
A hubfleet hub with `binderhub-service` and anonymous launches; per round:

  first launch: a new anonymous visitor (a session with no cookies) opens the event stream
      `GET /hub/binder/build/git/<url-escaped repository path>/main` (t0) and reads it until
      the `ready` event (t1); the commit is new, so its environment is built (pip from PyPI).
  relaunch:     another new anonymous visitor opens the same URL (same commit): the
      environment is found built; the phases are recorded to show there is no `building`.

  Each launch starts a server of its own (each visitor is a new temporary user). Once a
  launch is `ready`, its server is stopped and its user deleted with the admin service token
  (`DELETE /hub/api/users/<name>/server`, then `DELETE /hub/api/users/<name>`), so every launch
  starts with no other server running.

The script builds nothing: it runs the hubfleet binary given with --hubfleet (default
target/release/hubfleet). It writes (or replaces) the section "## Config changes and binder
launches" in docs/benchmarks.md. Run it with the venv's Python (jupyterhub, jupyterlab,
requests); bench/reload/run.sh does that.
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
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SECTION = "## Config changes and binder launches"
DOC_INTRO = (
    "# Benchmarks\n\nFigures from runs on the machine named under each table. "
    "Each section gives the command that produced it.\n"
)
POLL = 0.02  # seconds between polls of /hub/spawn (part 1)
SLOW_POLL = 0.1  # seconds between other polls (server start and stop)
PACKAGE = "pyjokes"
BASE_PROFILES = [("Small machine", "small"), ("Large machine", "large")]
CHP_CANDIDATES = [
    REPO / "crates/hubfleet/tests/fixtures/chp/node_modules/.bin/configurable-http-proxy",
    REPO / "bench/spawn/node_modules/.bin/configurable-http-proxy",
    REPO / "bench/proxy/node_modules/.bin/configurable-http-proxy",
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------------------
# processes and files
# --------------------------------------------------------------------------------------


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _zombie(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def pids_in(directory: Path) -> set[int]:
    """Live processes whose working directory is `directory` or below it (a user's servers)."""
    d = str(directory.resolve())
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cwd = _cwd(int(entry))
            if (cwd == d or cwd.startswith(d + "/")) and not _zombie(int(entry)):
                out.add(int(entry))
    return out


def ppid(pid: int) -> int:
    try:
        stat = open(f"/proc/{pid}/stat").read()
        return int(stat.rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def server_roots(home: Path) -> set[int]:
    """The top processes among those working in `home` (a server's own process, not the short
    helpers that JupyterLab runs now and then, which come and go)."""
    pids = pids_in(home)
    return {p for p in pids if ppid(p) not in pids}


def procs_under(root: Path) -> list[tuple[int, str]]:
    """Processes whose cwd, command line or environment points under `root`."""
    root_s = str(root)
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        cwd = _cwd(pid)
        hit = cwd == root_s or cwd.startswith(root_s + "/")
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        hit = hit or root_s in cmdline
        if not hit:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    hit = root_s.encode() in f.read()
            except OSError:
                pass
        if hit and not _zombie(pid):
            found.append((pid, cmdline))
    return found


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def replace_file(path: Path, text: str) -> None:
    """Write `text` to a new file and rename it over `path`, as editors save."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


def git(repo: Path, *args: str) -> str:
    r = subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org",
                        *args], cwd=repo, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"git {' '.join(args)} in {repo} failed: {r.stderr.strip()}")
    return r.stdout.strip()


def regex_escape(text: str) -> str:
    """`text` as a literal in a regular expression (as the binder tests escape it)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


# --------------------------------------------------------------------------------------
# a browser-like session (login as in bench/spawn)
# --------------------------------------------------------------------------------------


class Session:
    def __init__(self, base: str, label: str, log_path: Path):
        self.base = base
        self.label = label
        self.log_path = log_path
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.headers.update({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"})
        self.trace: list[str] = []

    def note(self, r: requests.Response) -> None:
        self.trace.append(f"{r.request.method} {r.url} -> {r.status_code}"
                          + (f" Location: {r.headers['Location']}" if "Location" in r.headers else ""))
        del self.trace[:-20]

    def fail(self, what: str) -> BenchError:
        return BenchError(f"{self.label}: {what}\n  requests (latest last):\n    "
                          + "\n    ".join(self.trace)
                          + f"\n  hub log ({self.log_path}) tail:\n{tail(self.log_path)}")

    def xsrf(self) -> str | None:
        best = None
        for c in self.s.cookies:
            if c.name == "_xsrf" and (c.path or "/").startswith("/hub"):
                best = c.value
        return best or next((c.value for c in self.s.cookies if c.name == "_xsrf"), None)

    def login(self, user: str) -> None:
        r = self.s.get(self.base + "/hub/login", timeout=30)
        self.note(r)
        if r.status_code != 200:
            raise self.fail(f"GET /hub/login: {r.status_code}")
        data = {"username": user, "password": "bench"}
        # The form's hidden _xsrf (hubfleet masks it, so it differs from the cookie), else the cookie.
        m = re.search(r'name="_xsrf"\s+value="([^"]+)"', r.text)
        xsrf = m.group(1) if m else self.xsrf()
        if xsrf:
            data["_xsrf"] = xsrf
        r = self.s.post(self.base + "/hub/login", data=data, allow_redirects=False, timeout=30)
        self.note(r)
        if r.status_code not in (302, 303):
            raise self.fail(f"POST /hub/login as {user}: {r.status_code} (expected 302)")

    def spawn_page(self, timeout: float = 5) -> requests.Response:
        r = self.s.get(self.base + "/hub/spawn", allow_redirects=False, timeout=timeout)
        self.note(r)
        return r


class Api:
    """REST API calls with the admin service's token."""

    def __init__(self, base: str, token: str, label: str, log_path: Path):
        self.base, self.label, self.log_path = base, label, log_path
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, ok=(200,), body=None, timeout: float = 30):
        r = self.s.request(method, self.base + path, json=body, timeout=timeout)
        if r.status_code not in ok:
            raise BenchError(f"{self.label}: {method} {path}: {r.status_code} {r.text[:300]!r}"
                             f"\n  hub log ({self.log_path}) tail:\n{tail(self.log_path)}")
        return r.json() if r.content and "json" in r.headers.get("Content-Type", "") else None


def server_ready(model: dict) -> bool:
    """The user's default server runs (hubfleet's and JupyterHub's user models)."""
    default = (model.get("servers") or {}).get("")
    if default is not None:
        return bool(default.get("ready"))
    return bool(model.get("server")) and not model.get("pending")


def server_gone(model: dict) -> bool:
    return not model.get("server") and not model.get("pending") and "" not in (model.get("servers") or {})


# --------------------------------------------------------------------------------------
# part 1: the hubs
# --------------------------------------------------------------------------------------


class Hub:
    key = ""
    label = ""

    def __init__(self, root: Path, venv: Path, port: int):
        self.root = root
        self.root.mkdir(parents=True)
        self.venv = venv
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.token = secrets.token_hex(24)
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "hub.log"
        self.viewer: Session | None = None
        self.api: Api | None = None
        self.keeper_pids: set[int] = set()

    # --- to be given by each hub
    def command(self) -> list[str]:
        raise NotImplementedError

    def write_config(self, profiles: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def home(self, user: str) -> Path:
        raise NotImplementedError

    def change(self, profiles: list[tuple[str, str]]) -> dict:
        """Apply the new profiles; the times (s) of what it did, from t0 = the file written."""
        raise NotImplementedError

    # --- shared
    def launch(self, timeout: float = 120, poll: float = SLOW_POLL) -> float:
        """Start the hub process; seconds until GET /hub/login answers 200 (polled every `poll` s)."""
        cmd = self.command()
        env = dict(os.environ)
        env["PATH"] = f"{self.venv}/bin:{env.get('PATH', '/usr/bin:/bin')}"
        logf = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=self.root, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        logf.close()
        last = ""
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode} during start-up "
                                 f"({' '.join(cmd)}); log tail:\n{tail(self.log_path)}")
            try:
                r = requests.get(self.base + "/hub/login", timeout=5, allow_redirects=False)
                last = str(r.status_code)
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(poll)
        raise BenchError(f"{self.label}: GET /hub/login not 200 within {timeout} s (last: {last}); "
                         f"log tail:\n{tail(self.log_path)}")

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM to the hub; seconds until it exited."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.label}: still running {timeout} s after SIGTERM: SIGKILL")
            self.proc.kill()
            self.proc.wait(timeout=10)
        return time.perf_counter() - t0

    def start(self) -> float:
        self.write_config(list(BASE_PROFILES))
        up = self.launch()
        log(f"{self.label}: up in {up:.2f} s at {self.base}")
        self.api = Api(self.base, self.token, self.label, self.log_path)
        self.viewer = Session(self.base, f"{self.label} (viewer)", self.log_path)
        self.viewer.login("viewer")
        r = self.viewer.spawn_page(timeout=30)
        if r.status_code != 200 or BASE_PROFILES[1][0] not in r.text:
            raise self.viewer.fail(f"GET /hub/spawn: {r.status_code}, the options form with "
                                   f"{BASE_PROFILES[1][0]!r} expected; page starts {r.text[:300]!r}")
        return up

    def start_keeper(self, timeout: float = 180) -> float:
        """Start `keeper`'s server through the API; note its processes."""
        api = self.api
        api.call("POST", "/hub/api/users/keeper", ok=(201, 409))
        t0 = time.perf_counter()
        api.call("POST", "/hub/api/users/keeper/server", ok=(201, 202), body={"profile": "small"})
        while True:
            model = api.call("GET", "/hub/api/users/keeper")
            if server_ready(model) and self.keeper_reachable():
                break
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{self.label}: keeper's server not ready after {timeout} s: "
                                 f"{json.dumps(model)[:400]}; log tail:\n{tail(self.log_path)}")
            time.sleep(SLOW_POLL)
        dt = time.perf_counter() - t0
        self.keeper_pids = server_roots(self.home("keeper"))
        if not self.keeper_pids:
            raise BenchError(f"{self.label}: keeper's server runs but no process has its cwd in "
                             f"{self.home('keeper')}")
        log(f"{self.label}: keeper's server ready in {dt:.2f} s, pids {sorted(self.keeper_pids)}")
        return dt

    def keeper_reachable(self) -> bool:
        try:
            r = requests.get(self.base + "/user/keeper/api", timeout=5, allow_redirects=False)
            return r.status_code == 200 and "version" in r.text
        except requests.RequestException:
            return False

    def keeper_kept(self) -> tuple[bool, str]:
        """Is keeper's server the same, alive, listed and reachable? (and why not)"""
        now = server_roots(self.home("keeper"))
        if now != self.keeper_pids:
            return False, f"pids {sorted(self.keeper_pids)} -> {sorted(now)}"
        model = self.api.call("GET", "/hub/api/users/keeper")
        if not server_ready(model):
            return False, f"the hub does not list it as running: {json.dumps(model)[:300]}"
        if not self.keeper_reachable():
            return False, "GET /user/keeper/api is not 200"
        return True, ""

    def stop_keeper(self, timeout: float = 60) -> None:
        self.api.call("DELETE", "/hub/api/users/keeper/server", ok=(202, 204, 400, 404))
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            if server_gone(self.api.call("GET", "/hub/api/users/keeper")) and not pids_in(self.home("keeper")):
                return
            time.sleep(SLOW_POLL)
        log(f"{self.label}: keeper's server not stopped after {timeout} s")

    def round(self, profiles: list[tuple[str, str]], timeout: float) -> dict:
        """One change: returns {"total": s, ...} from the file written to the name on /hub/spawn."""
        name = profiles[-1][0]
        before = self.viewer.spawn_page()
        if name in before.text:
            raise self.viewer.fail(f"{name!r} on /hub/spawn before the change")
        t0_wall = time.time()
        t0 = time.perf_counter()
        parts = self.change(profiles)
        last = ""
        polls = 0
        while True:
            try:
                r = self.viewer.spawn_page()
                polls += 1
                last = f"{r.status_code}"
                if r.status_code == 200 and name in r.text:
                    break
                if r.status_code in (301, 302, 303):
                    last += f" -> {r.headers.get('Location')}"
            except requests.RequestException as e:
                last = type(e).__name__
            if time.perf_counter() - t0 > timeout:
                raise self.viewer.fail(f"{name!r} not on /hub/spawn {timeout} s after the change "
                                       f"(last: {last})")
            time.sleep(POLL)
        out = {"total": time.perf_counter() - t0, "polls": polls, "t0_wall": t0_wall, **parts}
        return out


class Ours(Hub):
    key = "ours"
    label = "hubfleet"

    def __init__(self, root: Path, venv: Path, port: int, binary: Path):
        super().__init__(root, venv, port)
        self.binary = binary
        self.config = root / "hub.yaml"

    def command(self):
        return [str(self.binary), "serve", "--config", str(self.config)]

    def home(self, user):
        return self.root / "data" / "homes" / user

    def write_config(self, profiles):
        entries = "".join(f"    - display_name: {d}\n      slug: {s}\n" for d, s in profiles)
        allow_root = "    allow_root: true\n" if os.geteuid() == 0 else ""
        replace_file(self.config, (
            "hub:\n"
            "  config:\n"
            "    JupyterHub:\n"
            "      authenticator_class: dummy\n"
            "  services:\n"
            "    bench:\n"
            "      admin: true\n"
            f"      apiToken: {self.token}\n"
            "singleuser:\n"
            "  defaultUrl: /lab\n"
            "  profileList:\n"
            f"{entries}"
            "hubfleet:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            f"  data_dir: {self.root / 'data'}\n"
            "  local:\n"
            f"    python_env: {self.venv}\n"
            f"{allow_root}"
        ))

    def reload_times(self, rounds: list[dict]) -> None:
        """From the hub's log, add to each round `watch` (file written → the reload starts) and
        `reload` (the reload's own work: load, check and apply the files), in seconds."""
        starts, ends = [], []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "the config files changed: reloading them" in line or "config reloaded" in line:
                try:
                    ts = _dt.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
                except (ValueError, IndexError):
                    continue
                (starts if "reloading them" in line else ends).append(ts)
        for r in rounds:
            start = next((t for t in starts if t >= r["t0_wall"] - 0.005), None)
            end = next((t for t in ends if start is not None and t >= start), None)
            if start is not None and end is not None and end - r["t0_wall"] < r["total"] + 1:
                r["watch"], r["reload"] = start - r["t0_wall"], end - start

    def change(self, profiles):
        pid = self.proc.pid
        self.write_config(profiles)
        if self.proc.poll() is not None or self.proc.pid != pid:
            raise BenchError(f"hubfleet exited after the change; log tail:\n{tail(self.log_path)}")
        return {}


class Upstream(Hub):
    key = "upstream"
    label = "JupyterHub"

    def __init__(self, root: Path, venv: Path, port: int, hub_port: int, api_port: int, chp: Path):
        super().__init__(root, venv, port)
        self.hub_port, self.api_port, self.chp = hub_port, api_port, chp
        self.config = root / "jupyterhub_config.py"
        self.proxy_token = secrets.token_hex(24)
        self.chp_proc: subprocess.Popen | None = None

    def command(self):
        return [str(self.venv / "bin" / "jupyterhub"), "-f", str(self.config)]

    def home(self, user):
        return self.root / "homes" / user

    def write_config(self, profiles):
        options = "".join(f'<option value="{s}">{d}</option>' for d, s in profiles)
        form = f'<label for="profile">Profile</label><select name="profile" id="profile">{options}</select>'
        replace_file(self.config, (
            "c = get_config()  # noqa\n"
            "c.JupyterHub.authenticator_class = 'dummy'\n"
            f"c.JupyterHub.services = [{{'name': 'bench', 'api_token': {self.token!r}, 'admin': True}}]\n"
            "c.JupyterHub.spawner_class = 'jupyterhub.spawner.SimpleLocalProcessSpawner'\n"
            f"c.SimpleLocalProcessSpawner.home_dir_template = {str(self.root / 'homes') + '/{username}'!r}\n"
            f"c.Spawner.cmd = [{str(self.venv / 'bin' / 'jupyterhub-singleuser')!r}]\n"
            "c.Spawner.args = ['--allow-root']\n"
            "c.Spawner.default_url = '/lab'\n"
            f"c.Spawner.options_form = {form!r}\n"
            f"c.JupyterHub.bind_url = 'http://127.0.0.1:{self.port}'\n"
            "c.JupyterHub.hub_ip = '127.0.0.1'\n"
            f"c.JupyterHub.hub_port = {self.hub_port}\n"
            "c.ConfigurableHTTPProxy.should_start = False\n"
            f"c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:{self.api_port}'\n"
            f"c.ConfigurableHTTPProxy.auth_token = {self.proxy_token!r}\n"
            f"c.JupyterHub.db_url = 'sqlite:///{self.root / 'jupyterhub.sqlite'}'\n"
            f"c.JupyterHub.cookie_secret_file = {str(self.root / 'jupyterhub_cookie_secret')!r}\n"
            "c.JupyterHub.cleanup_servers = False\n"
            "c.JupyterHub.cleanup_proxy = False\n"
        ))

    def start(self) -> float:
        self.start_proxy()
        return super().start()

    def start_proxy(self) -> None:
        cmd = [str(self.chp), "--ip", "127.0.0.1", "--port", str(self.port),
               "--api-ip", "127.0.0.1", "--api-port", str(self.api_port),
               "--error-target", f"http://127.0.0.1:{self.hub_port}/hub/error"]
        env = dict(os.environ, CONFIGPROXY_AUTH_TOKEN=self.proxy_token)
        logf = open(self.root / "chp.log", "ab")
        self.chp_proc = subprocess.Popen(cmd, cwd=self.root, stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        logf.close()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 30:
            if self.chp_proc.poll() is not None:
                raise BenchError(f"configurable-http-proxy exited with {self.chp_proc.returncode}; "
                                 f"log tail:\n{tail(self.root / 'chp.log')}")
            try:
                r = requests.get(f"http://127.0.0.1:{self.api_port}/api/routes", timeout=2,
                                 headers={"Authorization": f"token {self.proxy_token}"})
                if r.status_code == 200:
                    log(f"configurable-http-proxy up (pid {self.chp_proc.pid}), left running across hub restarts")
                    return
            except requests.RequestException:
                pass
            time.sleep(SLOW_POLL)
        raise BenchError(f"configurable-http-proxy's API did not answer within 30 s; "
                         f"log tail:\n{tail(self.root / 'chp.log')}")

    def change(self, profiles):
        self.write_config(profiles)  # t0 was just before this
        t0 = time.perf_counter()
        stop = self.terminate()
        if self.chp_proc.poll() is not None:
            raise BenchError("configurable-http-proxy exited with the hub")
        self.launch(poll=POLL)
        return {"stop": stop, "up": time.perf_counter() - t0 - stop}

    def stop_proxy(self) -> None:
        if self.chp_proc is not None and self.chp_proc.poll() is None:
            self.chp_proc.terminate()
            try:
                self.chp_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.chp_proc.kill()


# --------------------------------------------------------------------------------------
# part 2: binder
# --------------------------------------------------------------------------------------


class BinderHub(Hub):
    key = "binder"
    label = "hubfleet (binder)"

    def __init__(self, root: Path, venv: Path, port: int, binary: Path, repos: Path):
        super().__init__(root, venv, port)
        self.binary = binary
        self.repos = repos
        self.config = root / "hub.yaml"

    def command(self):
        return [str(self.binary), "serve", "--config", str(self.config)]

    def home(self, user):
        return self.root / "data" / "homes" / user

    def write_config(self, _profiles=None):
        allowed = "^git/" + regex_escape(urllib.parse.quote(str(self.repos), safe=""))
        allow_root = "    allow_root: true\n" if os.geteuid() == 0 else ""
        replace_file(self.config, (
            "hub:\n"
            "  config:\n"
            "    JupyterHub:\n"
            "      authenticator_class: dummy\n"
            "  services:\n"
            "    bench:\n"
            "      admin: true\n"
            f"      apiToken: {self.token}\n"
            "singleuser:\n"
            "  defaultUrl: /lab\n"
            "binderhub-service:\n"
            "  enabled: true\n"
            "  hubfleet:\n"
            "    allow_anonymous_launches: true\n"
            f"    allowed_specs: ['{allowed}']\n"
            "    max_temporary_users: 50\n"
            "hubfleet:\n"
            f"  listen: 127.0.0.1:{self.port}\n"
            f"  data_dir: {self.root / 'data'}\n"
            "  local:\n"
            f"    python_env: {self.venv}\n"
            f"{allow_root}"
        ))

    def start(self) -> float:
        self.write_config()
        up = self.launch()
        log(f"{self.label}: up in {up:.2f} s at {self.base}")
        self.api = Api(self.base, self.token, self.label, self.log_path)
        return up

    def environments(self) -> int:
        d = self.root / "data" / "binder" / "environments"
        return len(list(d.iterdir())) if d.is_dir() else 0

    def launch_binder(self, spec: str, timeout: float) -> dict:
        """Open the event stream as a new anonymous visitor; read it to `ready`."""
        s = requests.Session()
        s.trust_env = False
        url = f"{self.base}/hub/binder/build/{spec}"
        events: list[tuple[float, dict]] = []
        t0 = time.perf_counter()
        try:
            with s.get(url, stream=True, timeout=(10, timeout),
                       headers={"Accept": "text/event-stream"}) as r:
                if r.status_code != 200:
                    raise BenchError(f"GET {url}: {r.status_code} {r.text[:300]!r}")
                buf = ""
                done = False
                for chunk in r.iter_content(chunk_size=None, decode_unicode=False):
                    buf += chunk.decode(errors="replace")
                    while "\n\n" in buf and not done:
                        block, buf = buf.split("\n\n", 1)
                        for line in block.splitlines():
                            if line.startswith("data:"):
                                ev = json.loads(line[5:].strip())
                                events.append((time.perf_counter() - t0, ev))
                                if ev.get("phase") in ("ready", "failed"):
                                    done = True
                    if done:
                        break
                    if time.perf_counter() - t0 > timeout:
                        break
        except requests.RequestException as e:
            raise BenchError(f"{self.label}: event stream {url}: {e!r}; phases so far "
                             f"{phases(events)}; log tail:\n{tail(self.log_path)}")
        total = time.perf_counter() - t0
        last = events[-1][1] if events else {}
        if last.get("phase") != "ready":
            msgs = "\n    ".join(f"{t:7.2f}s {e.get('phase')}: {str(e.get('message', ''))[:200]}"
                                  for t, e in events[-15:])
            raise BenchError(f"{self.label}: {url} ended without `ready` after {total:.1f} s; "
                             f"events (last 15):\n    {msgs}\n  hub log tail:\n{tail(self.log_path)}")
        user = ""
        parts = (last.get("url") or "").split("/")
        if "user" in parts and parts.index("user") + 1 < len(parts):
            user = parts[parts.index("user") + 1]
        if not user:
            raise BenchError(f"{self.label}: the ready event names no /user/<name>/ url: {last}")

        def at(phase):
            return next((t for t, e in events if e.get("phase") == phase), None)

        installed = ""
        for _, e in events:
            m = re.search(r"Successfully installed (.+)", str(e.get("message", "")))
            if m:
                installed = m.group(1).strip()
        return {"total": events[-1][0], "phases": phases(events), "user": user,
                "launching": at("launching"), "installed": installed,
                "built_message": next((str(e.get("message", "")).strip() for _, e in events
                                       if e.get("phase") == "built"), "")}

    def remove_user(self, user: str, timeout: float = 60) -> None:
        """Stop the user's server, wait until it and its processes are gone, delete the user."""
        self.api.call("DELETE", f"/hub/api/users/{user}/server", ok=(202, 204, 400, 404))
        t0 = time.perf_counter()
        while True:
            model = self.api.call("GET", f"/hub/api/users/{user}", ok=(200, 404))
            if model is None or (server_gone(model) and not pids_in(self.home(user))):
                break
            if time.perf_counter() - t0 > timeout:
                raise BenchError(f"{self.label}: {user}'s server not stopped after {timeout} s: "
                                 f"{json.dumps(model)[:300]}, pids {sorted(pids_in(self.home(user)))}")
            time.sleep(SLOW_POLL)
        self.api.call("DELETE", f"/hub/api/users/{user}", ok=(204, 404))


def phases(events) -> list[str]:
    out: list[str] = []
    for _, e in events:
        p = str(e.get("phase", ""))
        if not out or out[-1] != p:
            out.append(p)
    return out


def notebook() -> str:
    return json.dumps({
        "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                   "source": ["import pyjokes\nprint(pyjokes.get_joke())"]}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5,
    })


def make_repository(repo: Path) -> None:
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "requirements.txt").write_text(f"{PACKAGE}\n")
    (repo / "jokes.ipynb").write_text(notebook())
    (repo / "round.txt").write_text("initial\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "binder bench repository")


# --------------------------------------------------------------------------------------
# setup helpers
# --------------------------------------------------------------------------------------


def binary_note(binary: Path) -> str:
    """Where the binary came from, as far as can be told: its build time, the work tree's HEAD
    (cargo builds the work tree, committed or not), and any source under crates/ (or Cargo.*)
    changed after the binary was written, which the binary then does not have (an edit made
    while cargo was building is not caught: check the build's start time against such edits)."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "?"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates",
                            "Cargo.toml", "Cargo.lock"], capture_output=True, text=True).stdout.strip()
    built = binary.stat().st_mtime
    newer = []
    for top in [REPO / "crates", REPO / "Cargo.toml", REPO / "Cargo.lock"]:
        paths = [top] if top.is_file() else top.rglob("*") if top.is_dir() else []
        for f in paths:
            if "node_modules" in f.parts or "target" in f.parts or not f.is_file():
                continue
            try:
                if f.stat().st_mtime > built:
                    newer.append(os.path.relpath(f, REPO))
            except OSError:
                pass
    mtime = _dt.datetime.fromtimestamp(built, _dt.timezone.utc)
    profile = "debug" if "/debug/" in str(binary) else "release" if "/release/" in str(binary) else "given"
    note = (f"{profile} binary `{binary}` built {mtime:%Y-%m-%d %H:%M} UTC; work tree at the run's "
            f"start: HEAD {head}" + (", with uncommitted changes in crates/" if dirty else ", crates/ clean"))
    if newer:
        note += (f"; {len(newer)} source file(s) changed after the build, not in the binary: "
                 + ", ".join(f"`{n}`" for n in sorted(newer)[:5]) + (" …" if len(newer) > 5 else ""))
    return note


def find_chp(given: Path | None) -> Path:
    for c in ([given] if given else CHP_CANDIDATES):
        if c and c.exists():
            return c
    raise BenchError("configurable-http-proxy not found (looked at "
                     + ", ".join(str(c) for c in ([given] if given else CHP_CANDIDATES))
                     + "): install it with npm (e.g. `npm ci` in crates/hubfleet/tests/fixtures/chp) "
                       "or pass --chp")


def machine() -> dict[str, str]:
    cpu, mem = "unknown", "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "mem": mem, "kernel": platform.release()}


def versions(venv: Path, binary: Path, chp: Path) -> dict[str, str]:
    def run(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip() or "?"
        except Exception:  # noqa: BLE001
            return "?"

    py = str(venv / "bin" / "python")
    out = {
        "jupyterhub": run([py, "-c", "import jupyterhub; print(jupyterhub.__version__)"]),
        "jupyterlab": run([py, "-c", "import jupyterlab; print(jupyterlab.__version__)"]),
        "python": run([py, "-c", "import platform; print(platform.python_version())"]),
        "pip": run([py, "-m", "pip", "--version"]).split(" ")[1:2],
        "node": run(["node", "--version"]).lstrip("v"),
        "git": run(["git", "--version"]).replace("git version", "").strip(),
        "hubfleet": run([str(binary), "--version"]).replace("hubfleet", "").strip(),
    }
    out["pip"] = out["pip"][0] if out["pip"] else "?"
    try:
        pkg = chp.resolve().parent.parent / "package.json"
        out["chp"] = json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        out["chp"] = "?"
    return out


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def stat3(ts: list[float]):
    if not ts:
        return None, None, None
    return statistics.median(ts), min(ts), max(ts)


def ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.1f}×"


def render_reload(res: dict, v: dict, rounds: int) -> str:
    o, u = res["ours"], res["upstream"]
    ot = [r["total"] for r in o["rounds"]]
    ut = [r["total"] for r in u["rounds"]]
    us = [r["stop"] for r in u["rounds"]]
    uu = [r["up"] for r in u["rounds"]]
    up_label = f"JupyterHub {v['jupyterhub']} + CHP {v['chp']} (restart)"
    rows = [f"| | hubfleet (file watch, no restart) | {up_label} | ratio (JupyterHub / hubfleet) |",
            "| --- | ---: | ---: | ---: |"]
    for name, a, b in zip(("median", "min", "max"), stat3(ot), stat3(ut)):
        rows.append(f"| file written → new profile on `/hub/spawn`, {name} (s) | {fmt(a, 3)} | "
                    f"{fmt(b, 3)} | {ratio(b, a)} |")
    ow = [r["watch"] for r in o["rounds"] if "watch" in r]
    orl = [r["reload"] for r in o["rounds"] if "reload" in r]
    rows.append(f"| of which: file written → reload starts (watch: 250 ms quiet), median (s) | "
                f"{fmt(stat3(ow)[0], 3)} | — | |")
    rows.append(f"| of which: the reload (load, check, apply; from the hub's log), median (s) | "
                f"{fmt(stat3(orl)[0], 3)} | — | |")
    rows.append(f"| of which: hub stop (SIGTERM → exit), median (s) | — | {fmt(stat3(us)[0], 3)} | |")
    rows.append(f"| of which: hub start → option shown, median (s) | — | {fmt(stat3(uu)[0], 3)} | |")
    rows.append(f"| successful rounds | {len(ot)}/{rounds} | {len(ut)}/{rounds} | |")
    kept = []
    for r in (o, u):
        n = sum(1 for x in r["rounds"] if x["kept"])
        kept.append(f"{n}/{len(r['rounds'])}")
    rows.append(f"| running server kept (same pids, listed, `/user/keeper/api` 200) after each round | "
                f"{kept[0]} | {kept[1]} | |")
    per = "\n".join(
        f"- {lab}: " + ", ".join(fmt(x["total"], 3) for x in r["rounds"]) + " s"
        + (" (hub stop + start → shown: " + ", ".join(f"{fmt(x['stop'], 2)}+{fmt(x['up'], 2)}"
                                                         for x in r["rounds"]) + ")" if k == "upstream" else "")
        + (f"; failed: {'; '.join(r['failed'])}" if r["failed"] else "")
        + ("; server not kept: " + "; ".join(x["why"] for x in r["rounds"] if not x["kept"])
           if any(not x["kept"] for x in r["rounds"]) else "")
        for k, lab, r in (("ours", "hubfleet", o), ("upstream", up_label, u))
    )
    return "\n".join(rows) + "\n\nPer-round times (in run order):\n\n" + per + "\n"


def render_binder(res: dict, rounds: int) -> str:
    first, again = res["first"], res["again"]
    rows = ["| | first launch (new commit: builds) | relaunch (same commit: cached) | ratio (first / relaunch) |",
            "| --- | ---: | ---: | ---: |"]
    ft = [r["total"] for r in first]
    at = [r["total"] for r in again]
    for name, a, b in zip(("median", "min", "max"), stat3(ft), stat3(at)):
        rows.append(f"| event stream opened → `ready`, {name} (s) | {fmt(a)} | {fmt(b)} | {ratio(a, b)} |")
    fl = [r["launching"] for r in first if r["launching"] is not None]
    al = [r["launching"] for r in again if r["launching"] is not None]
    rows.append(f"| of which: → `launching` (fetch, build or find), median (s) | {fmt(stat3(fl)[0])} | "
                f"{fmt(stat3(al)[0])} | {ratio(stat3(fl)[0], stat3(al)[0])} |")
    fs = [r["total"] - r["launching"] for r in first if r["launching"] is not None]
    as_ = [r["total"] - r["launching"] for r in again if r["launching"] is not None]
    rows.append(f"| of which: `launching` → `ready` (server start), median (s) | {fmt(stat3(fs)[0])} | "
                f"{fmt(stat3(as_)[0])} | |")
    rows.append(f"| successful launches | {len(first)}/{rounds} | {len(again)}/{rounds} | |")

    def seen(rs):
        kinds = sorted({", ".join(r["phases"]) for r in rs})
        return "; ".join(f"`{k}`" for k in kinds) or "n/a"

    rows.append(f"| phases seen | {seen(first)} | {seen(again)} | |")
    rows.append(f"| launches with a `building` phase | {sum('building' in r['phases'] for r in first)}/{len(first)} | "
                f"{sum('building' in r['phases'] for r in again)}/{len(again)} | |")
    rows.append(f"| new environments kept (in `binder/environments/`) | {sum(r['new_envs'] for r in first)} | "
                f"{sum(r['new_envs'] for r in again)} | |")
    per = "\n".join(f"- round {i}: first launch {fmt(f['total'])} s (→ `launching` {fmt(f['launching'])} s), "
                    f"relaunch {fmt(a['total'])} s (→ `launching` {fmt(a['launching'])} s)"
                    for i, (f, a) in enumerate(zip(first, again), 1))
    if res["failed"]:
        per += "\n- failed: " + "; ".join(res["failed"])
    return "\n".join(rows) + "\n\nPer round (in run order):\n\n" + per + "\n"


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10, help="profile changes per hub (default 10)")
    ap.add_argument("--binder-rounds", type=int, default=3,
                    help="binder rounds, each a first launch and a relaunch (default 3; 0 skips part 2)")
    ap.add_argument("--venv", type=Path, default=os.environ.get("HUBFLEET_PYTHON_ENV") or None,
                    help="venv with jupyterhub + jupyterlab (default: $HUBFLEET_PYTHON_ENV)")
    ap.add_argument("--hubfleet", type=Path, default=REPO / "target" / "release" / "hubfleet",
                    help="the hubfleet binary (default target/release/hubfleet; nothing is built)")
    ap.add_argument("--chp", type=Path, default=None, help="configurable-http-proxy executable")
    ap.add_argument("--ours-port", type=int, default=18300)
    ap.add_argument("--binder-port", type=int, default=18301)
    ap.add_argument("--upstream-port", type=int, default=18310)
    ap.add_argument("--upstream-hub-port", type=int, default=18311)
    ap.add_argument("--upstream-api-port", type=int, default=18312)
    ap.add_argument("--timeout", type=float, default=120,
                    help="seconds allowed for one change to show (default 120)")
    ap.add_argument("--binder-timeout", type=float, default=900,
                    help="seconds allowed for one binder launch (default 900)")
    ap.add_argument("--note", default="", help="a sentence added to the doc section (e.g. about the binary)")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs) afterwards")
    args = ap.parse_args()

    if args.venv is None:
        ap.error("no venv: pass --venv or set HUBFLEET_PYTHON_ENV")
    venv = args.venv.resolve()
    for tool in ("python", "jupyterhub", "jupyterhub-singleuser", "jupyter-lab"):
        if not (venv / "bin" / tool).exists():
            raise BenchError(f"{venv}/bin/{tool} missing: install jupyterhub and jupyterlab there")
    if args.rounds < 1 or args.binder_rounds < 0:
        ap.error("--rounds must be at least 1, --binder-rounds at least 0")
    binary = args.hubfleet.resolve()
    if not binary.exists():
        raise BenchError(f"{binary} not found: build it (cargo build --release -p hubfleet) or pass --hubfleet")
    chp = find_chp(args.chp)
    if args.binder_rounds and subprocess.run([str(venv / "bin" / "python"), "-c", f"import {PACKAGE}"],
                                             capture_output=True).returncode == 0:
        raise BenchError(f"{PACKAGE} is installed in {venv}: a binder build would not install it")
    ports = [args.ours_port, args.upstream_port, args.upstream_hub_port, args.upstream_api_port]
    if args.binder_rounds:
        ports.append(args.binder_port)
    busy = [p for p in ports if not port_free(p)]
    if busy:
        raise BenchError(f"port(s) {busy} on 127.0.0.1 in use; choose others with --*-port")
    cmd_line = os.environ.get("HUBFLEET_BENCH_CMD") or " ".join(
        ["python", os.path.relpath(__file__, REPO)] + sys.argv[1:])

    provenance = binary_note(binary)
    load_start = open("/proc/loadavg").read().split()[0]
    started = _dt.datetime.now(_dt.timezone.utc)
    tmp = Path(tempfile.mkdtemp(prefix="hubfleet-bench-reload-"))
    log(f"temp dir {tmp}; hubfleet {binary}")
    ours = Ours(tmp / "ours", venv, args.ours_port, binary)
    upstream = Upstream(tmp / "upstream", venv, args.upstream_port, args.upstream_hub_port,
                        args.upstream_api_port, chp)
    hubs: list[Hub] = [ours, upstream]
    binder: BinderHub | None = None
    res = {h.key: {"rounds": [], "failed": [], "start_s": None, "keeper_s": None} for h in hubs}
    bres = {"first": [], "again": [], "failed": []}
    errors: list[str] = []
    ok = False

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    try:
        # ---- part 1
        for h in hubs:
            res[h.key]["start_s"] = h.start()
            res[h.key]["keeper_s"] = h.start_keeper()
        profiles = list(BASE_PROFILES)
        for i in range(1, args.rounds + 1):
            profiles.append((f"Round {i} machine {secrets.token_hex(3)}", f"round{i}"))
            for h in hubs:
                try:
                    r = h.round(profiles, args.timeout)
                except (BenchError, requests.RequestException) as e:
                    msg = f"{h.label} round {i}: {e}"
                    log(f"FAILED: {msg}")
                    errors.append(msg)
                    res[h.key]["failed"].append(f"round {i}")
                    continue
                r["kept"], r["why"] = h.keeper_kept()
                res[h.key]["rounds"].append(r)
                extra = f" (stop {r['stop']:.2f} + start→shown {r['up']:.2f})" if "stop" in r else ""
                log(f"{h.label} round {i}/{args.rounds}: {r['total']:.3f} s{extra}, {r['polls']} polls; "
                    f"keeper's server kept: {r['kept']} {r['why']}")
        ours.reload_times(res["ours"]["rounds"])
        for h in hubs:
            h.stop_keeper()
        # ---- part 2
        if args.binder_rounds:
            repos = tmp / "repos"
            repo = repos / "jokes"
            make_repository(repo)
            binder = BinderHub(tmp / "binder", venv, args.binder_port, binary, repos)
            hubs.append(binder)
            binder.start()
            spec = f"git/{urllib.parse.quote(str(repo), safe='')}/main"
            log(f"binder spec {spec}")
            for i in range(1, args.binder_rounds + 1):
                (repo / "round.txt").write_text(f"round {i} {time.time()}\n")
                git(repo, "commit", "-q", "-am", f"round {i}")
                commit = git(repo, "rev-parse", "--short", "HEAD")
                try:
                    envs0 = binder.environments()
                    f = binder.launch_binder(spec, args.binder_timeout)
                    f["new_envs"] = binder.environments() - envs0
                    log(f"binder round {i} first launch (commit {commit}): {f['total']:.2f} s, "
                        f"phases {f['phases']}, installed {f['installed']!r}")
                    binder.remove_user(f["user"])  # the relaunch starts on a quiet machine too
                    envs1 = binder.environments()
                    a = binder.launch_binder(spec, args.binder_timeout)
                    a["new_envs"] = binder.environments() - envs1
                    log(f"binder round {i} relaunch: {a['total']:.2f} s, phases {a['phases']} "
                        f"({a['built_message']!r})")
                    binder.remove_user(a["user"])
                    if a["user"] == f["user"]:
                        raise BenchError(f"the relaunch reused the first launch's user {a['user']}")
                    bres["first"].append(f)
                    bres["again"].append(a)
                except (BenchError, requests.RequestException) as e:
                    msg = f"binder round {i}: {e}"
                    log(f"FAILED: {msg}")
                    errors.append(msg)
                    bres["failed"].append(f"round {i}")
        ok = True
    except BenchError as e:
        errors.append(str(e))
        log(f"ABORTED: {e}")
    except KeyboardInterrupt as e:
        errors.append(f"interrupted ({e})")
        log(f"interrupted ({e})")
    finally:
        cleanup(hubs, upstream, tmp, keep=args.keep or bool(errors))

    if not ok:
        print("\n\n".join(errors), file=sys.stderr)
        return 1

    load_end = open("/proc/loadavg").read().split()[0]
    v = versions(venv, binary, chp)
    m = machine()
    when = started.strftime("%Y-%m-%d %H:%M UTC")
    installed = next((r["installed"] for r in bres["first"] if r["installed"]), "")
    body = (
        "### A profile change reaches users\n\n"
        "Time from writing a changed config file (one new profile added) to the new profile being "
        "offered on the options page: `GET /hub/spawn` as a logged-in user, through the hub's "
        "public port, polled every 20 ms until it answers 200 with the new display name. Each round "
        "adds one new entry; the two hubs take turns (hubfleet, JupyterHub, hubfleet, …) in one run. "
        "The new file is written beside the old one and renamed over it, as editors save.\n\n"
        "- **hubfleet**: a new entry in `singleuser.profileList` of the values file given to "
        "`hubfleet serve --config`; the hub's file watch reloads it, no restart. The watch reloads once "
        "the files have been quiet for 250 ms (an editor's save is several events), which sets the "
        "floor here.\n"
        "- **JupyterHub**: `profile_list` is KubeSpawner's; with the local spawner "
        "(`SimpleLocalProcessSpawner`) the same change is a new `<option>` in "
        "`c.Spawner.options_form` in `jupyterhub_config.py`, read at start only, so the hub is "
        "restarted: SIGTERM, wait for the process to exit, start it again. configurable-http-proxy "
        "is started by the benchmark and left running (`c.ConfigurableHTTPProxy.should_start = "
        "False`), with `cleanup_servers = False` and `cleanup_proxy = False`.\n\n"
        "Both hubs also run a server (`jupyterhub-singleuser` with JupyterLab, from the same venv) for "
        "a user `keeper`, started through the REST API before the rounds; after each round the "
        "benchmark checks that its processes are the same (same pids, alive), that the hub lists it "
        "as running and that `GET /user/keeper/api` answers 200 through the proxy.\n\n"
        + render_reload(res, v, args.rounds)
        + "\n### Binder: first launch vs cached relaunch\n\n"
        "hubfleet only: upstream BinderHub needs Kubernetes and a container registry (its builds are "
        "repo2docker images), so there is no upstream run on this machine to set beside it. A local git "
        f"repository with `requirements.txt` naming `{PACKAGE}` (a small pure-Python package, fetched "
        f"from PyPI by each build{'; pip installed ' + installed if installed else ''}), a notebook, and "
        "a file each round changes and commits, so every round's first launch is of a new commit and "
        "really builds. Time from opening the event stream "
        "`GET /hub/binder/build/git/<url-escaped repository path>/main` to its `ready` event (the "
        "server up, with its URL and token). Each launch is a new anonymous visitor (no cookies; "
        "`allow_anonymous_launches: true`), so each starts a new server for a new temporary user: the "
        "relaunch is the same commit opened by another visitor, which finds the environment built. "
        "Each server is stopped and its user deleted through the REST API (admin service token) "
        "once its launch is `ready`, so every launch starts with no other server running.\n\n"
        + render_binder(bres, args.binder_rounds)
        + "\n"
        + (args.note.strip() + "\n\n" if args.note.strip() else "")
        + f"Command (from the repository root): `{cmd_line}`\n\n"
        f"Run: {when}; hubfleet {v['hubfleet']} ({provenance}); "
        f"JupyterHub {v['jupyterhub']}, configurable-http-proxy {v['chp']} on node {v['node']}, "
        f"JupyterLab {v['jupyterlab']}, Python {v['python']}, pip {v['pip']}, git {v['git']}.\n\n"
        f"Machine: nproc {m['nproc']}, CPU `{m['cpu']}`, memory {m['mem']}, Linux {m['kernel']}; "
        f"1-minute load average {load_start} at the start, {load_end} at the end "
        "(other work on the machine shows there).\n"
    )
    print(SECTION + "\n\n" + body)
    if errors:
        print("Errors during the run:\n\n" + "\n\n".join(errors), file=sys.stderr)
    if not args.no_doc:
        write_doc(args.doc, body)
        log(f"wrote {args.doc}")
    return 0 if not errors else 2


def cleanup(hubs: list[Hub], upstream: Upstream, tmp: Path, keep: bool) -> None:
    log("cleaning up")
    for h in hubs:
        try:
            h.terminate()
        except Exception as e:  # noqa: BLE001
            log(f"  {h.label}: stop failed: {e}")
    upstream.stop_proxy()
    # Servers outlive their hubs by design (hubfleet's always, JupyterHub's with
    # cleanup_servers = False): end every process still running under the temp dir.
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 2)):
        left = procs_under(tmp)
        if not left:
            break
        for pid, cmd in left:
            log(f"  leftover pid {pid}: {cmd[:160]} -> {signal.Signals(sig).name}")
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.time() + wait
        while time.time() < end and procs_under(tmp):
            time.sleep(0.1)
    left = procs_under(tmp)
    if left:
        log(f"  STILL RUNNING: {left}")
    if keep:
        log(f"kept {tmp} (logs: */hub.log, upstream/chp.log)")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
