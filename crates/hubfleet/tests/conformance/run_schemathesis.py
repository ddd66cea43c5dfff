#!/usr/bin/env python3
"""Run schemathesis against a running hub with the upstream REST API spec.

The upstream spec (`jupyterhub-rest-api.yml`, JupyterHub 6.0.0b2) is wrong in a few
places compared with upstream's code, which is what clients see. Each such place is a
deviation below, with the upstream code line that proves it; the same ids are explained
in docs/api-conformance.md (this script refuses to run if one is missing there). The
deviations are applied to a copy of the spec, so schemathesis still checks those
responses, against what the code returns, instead of skipping them.

Usage (conformance.rs runs it with the test venv's Python):

    run_schemathesis.py --spec SPEC --url http://127.0.0.1:PORT/hub/api --token TOKEN \
        --doc docs/api-conformance.md --work DIR [--max-examples N] [--seed S]

Exit status: schemathesis's (0 = no failure), 2 for a setup problem.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

# Upstream code lines are in jupyterhub/jupyterhub at commit 2841153d (6.0.0b2, the
# commit the spec was copied from). `B` = jupyterhub/apihandlers/base.py.
UPSTREAM = "jupyterhub/jupyterhub@2841153db6c1c25d8b50955e2f4b39f78f3d0119"

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]

# Operations not run at all: POST /shutdown stops the hub under test (a separate test
# covers it).
EXCLUDED_PATHS = ["/shutdown"]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["status", "message"],
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
}


def nullable(schema: dict) -> None:
    """Allow `null` besides the schema's type (and enum, if any)."""
    t = schema.get("type")
    if isinstance(t, list):
        if "null" not in t:
            t.append("null")
    elif t is not None:
        schema["type"] = [t, "null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"].append(None)


def op(spec: dict, method: str, path: str) -> dict:
    return spec["paths"][path][method.lower()]


# --------------------------------------------------------------------------------------
# Deviations: id -> (what the spec says vs the code, upstream evidence, patch)
# --------------------------------------------------------------------------------------


def d_services_object(spec):
    op(spec, "GET", "/services")["responses"][200]["content"]["application/json"]["schema"] = {
        "type": "object",
        "additionalProperties": {"$ref": "#/components/schemas/Service"},
    }


def d_nullable_fields(spec):
    s = spec["components"]["schemas"]
    for name in ("server", "pending", "last_activity", "auth_state", "user_info"):
        nullable(s["User"]["properties"][name])
    for name in ("pending", "last_activity", "started", "state", "user_options", "display_name"):
        nullable(s["Server"]["properties"][name])
    for model in ("Token", "NewToken"):
        for name in ("last_activity", "expires_at"):
            nullable(s[model]["properties"][name])


def d_pending_values(spec):
    s = spec["components"]["schemas"]
    for model in ("User", "Server"):
        enum = s[model]["properties"]["pending"]["enum"]
        for value in ("check", "rename"):
            if value not in enum:
                enum.append(value)


def d_pagination_integers(spec):
    params = spec["components"]["parameters"]
    for name in ("paginationOffset", "paginationLimit"):
        params[name]["schema"]["type"] = "integer"


def d_authorizations_token_removed(spec):
    op(spec, "POST", "/authorizations/token")["responses"][404] = {
        "description": "always: the endpoint was removed in JupyterHub 2.0",
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
    }


def d_oauth_token_errors(spec):
    oauth_error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    }
    responses = op(spec, "POST", "/oauth2/token")["responses"]
    for code in (400, 401):
        responses[code] = {
            "description": "OAuth 2 error (RFC 6749 section 5.2)",
            "content": {"application/json": {"schema": oauth_error}},
        }


# The 4xx answers each operation gives in upstream's code that the spec leaves out.
# Upstream evidence per (status, cause) is in docs/api-conformance.md, "error-responses".
ERRORS: dict[tuple[str, str], list[int]] = {
    ("GET", "/users"): [400],
    ("POST", "/users"): [400, 409],
    ("GET", "/users/{name}"): [404],
    ("POST", "/users/{name}"): [400, 409],
    ("DELETE", "/users/{name}"): [400, 404],
    ("PATCH", "/users/{name}"): [400, 404],
    ("POST", "/users/{name}/activity"): [400],
    ("POST", "/users/{name}/server"): [400, 404],
    ("DELETE", "/users/{name}/server"): [400, 404],
    ("GET", "/users/{name}/servers/{server_name}"): [404],
    ("PUT", "/users/{name}/servers/{server_name}"): [400, 404],
    ("POST", "/users/{name}/servers/{server_name}"): [400, 404],
    ("PATCH", "/users/{name}/servers/{server_name}"): [400, 404, 409],
    ("DELETE", "/users/{name}/servers/{server_name}"): [400, 404],
    ("GET", "/users/{name}/shared"): [400, 404],
    ("GET", "/users/{name}/shared/{owner}/{server_name}"): [404],
    ("DELETE", "/users/{name}/shared/{owner}/{server_name}"): [404],
    ("GET", "/users/{name}/tokens"): [404],
    ("POST", "/users/{name}/tokens"): [404],
    ("GET", "/users/{name}/tokens/{token_id}"): [404],
    ("DELETE", "/users/{name}/tokens/{token_id}"): [404],
    ("GET", "/groups"): [400],
    ("GET", "/groups/{name}"): [404],
    ("POST", "/groups/{name}"): [400, 409],
    ("DELETE", "/groups/{name}"): [404],
    ("GET", "/groups/{name}/shared"): [400, 404],
    ("GET", "/groups/{name}/shared/{owner}/{server_name}"): [404],
    ("DELETE", "/groups/{name}/shared/{owner}/{server_name}"): [404],
    ("POST", "/groups/{name}/users"): [400, 404],
    ("DELETE", "/groups/{name}/users"): [400, 404],
    ("PUT", "/groups/{name}/properties"): [400, 404],
    ("GET", "/shares/{owner}"): [400, 404],
    ("GET", "/shares/{owner}/{server_name}"): [400, 404],
    ("POST", "/shares/{owner}/{server_name}"): [400, 404],
    ("PATCH", "/shares/{owner}/{server_name}"): [400, 404],
    ("DELETE", "/shares/{owner}/{server_name}"): [404],
    ("GET", "/share-codes/{owner}"): [400, 404],
    ("GET", "/share-codes/{owner}/{server_name}"): [400, 404],
    ("POST", "/share-codes/{owner}/{server_name}"): [400, 404],
    ("DELETE", "/share-codes/{owner}/{server_name}"): [400, 404],
    ("GET", "/services/{name}"): [404],
    ("GET", "/proxy"): [400],
    ("PATCH", "/proxy"): [400],
    ("GET", "/authorizations/token/{token}"): [404],
    ("GET", "/authorizations/cookie/{cookie_name}/{cookie_value}"): [404],
}


def d_error_responses(spec):
    for (method, path), codes in ERRORS.items():
        responses = op(spec, method, path)["responses"]
        for code in codes:
            if code in responses or str(code) in responses:
                continue
            responses[code] = {
                "description": "error (upstream code; see docs/api-conformance.md)",
                "content": {"application/json": {"schema": ERROR_SCHEMA}},
            }


DEVIATIONS = [
    ("services-object", d_services_object),
    ("nullable-fields", d_nullable_fields),
    ("pending-values", d_pending_values),
    ("pagination-integers", d_pagination_integers),
    ("authorizations-token-removed", d_authorizations_token_removed),
    ("oauth-token-errors", d_oauth_token_errors),
    ("error-responses", d_error_responses),
]


# Resources made before the run, so that generated requests also reach existing users,
# groups, servers and shares instead of answering 404 almost always.
USERS = ["alice", "bob"]
GROUPS = ["students"]
SERVERS = ["lab"]


def api(base: str, token: str, method: str, path: str, body=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"token {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def seed(base: str, token: str) -> None:
    steps = [
        ("POST", "/users", {"usernames": USERS}, (201,)),
        ("POST", f"/groups/{GROUPS[0]}", {"users": ["alice"]}, (201,)),
        ("PUT", f"/users/alice/servers/{SERVERS[0]}", None, (201,)),
        ("POST", "/users/bob/server", None, (201, 202)),
        ("POST", f"/shares/alice/{SERVERS[0]}", {"user": "bob"}, (200,)),
        ("POST", f"/shares/alice/{SERVERS[0]}", {"group": GROUPS[0]}, (200,)),
        ("POST", f"/share-codes/alice/{SERVERS[0]}", {}, (200,)),
        ("POST", "/users/alice/tokens", {"note": "conformance"}, (201,)),
    ]
    for method, path, body, ok in steps:
        status, text = api(base, token, method, path, body)
        if status not in ok:
            raise SystemExit(f"seeding: {method} {path} answered {status}: {text[:300]}")


def config_toml() -> str:
    def values(items):
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return (
        f"[dictionaries.names]\nvalues = {values(USERS + GROUPS + ['admin'])}\n"
        f"[dictionaries.users]\nvalues = {values(USERS)}\n"
        f"[dictionaries.servers]\nvalues = {values(SERVERS + [''])}\n"
        "[parameters]\n"
        '"path.name" = { dictionary = "names", probability = 0.5 }\n'
        '"path.owner" = { dictionary = "users", probability = 0.5 }\n'
        '"path.server_name" = { dictionary = "servers", probability = 0.5 }\n'
    )


def patched_spec(path: Path) -> dict:
    spec = yaml.safe_load(path.read_text())
    spec = copy.deepcopy(spec)
    for _id, patch in DEVIATIONS:
        patch(spec)
    return spec


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--url", required=True, help="base URL of the API, e.g. http://127.0.0.1:8000/hub/api")
    ap.add_argument("--token", required=True)
    ap.add_argument("--doc", type=Path, required=True, help="docs/api-conformance.md")
    ap.add_argument("--work", type=Path, required=True, help="directory for the patched spec and reports")
    ap.add_argument("--user-token", default=None,
                    help="a token of an admin user: GET /user is also checked with it (the main run "
                         "uses --token, which should be an admin service's: the run cannot delete it)")
    ap.add_argument("--max-examples", type=int, default=10)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-time", type=int, default=None, help="seconds for the whole run (schemathesis --max-time)")
    args = ap.parse_args()

    st = Path(sys.executable).parent / "schemathesis"
    if not st.exists():
        st_path = shutil.which("schemathesis")
        if st_path is None:
            print(f"schemathesis is not installed in {Path(sys.executable).parent.parent}: "
                  "pip install schemathesis (it is in scripts/requirements-test.txt)", file=sys.stderr)
            return 2
        st = Path(st_path)

    doc = args.doc.read_text()
    missing = [d for d, _ in DEVIATIONS if f"`{d}`" not in doc]
    if missing:
        print(f"deviations not documented in {args.doc}: {', '.join(missing)}", file=sys.stderr)
        return 2

    args.work.mkdir(parents=True, exist_ok=True)
    spec_out = args.work / "jupyterhub-rest-api.patched.json"
    spec_out.write_text(json.dumps(patched_spec(args.spec), indent=1, default=str))

    base = args.url.rstrip("/")
    seed(base, args.token)
    config = args.work / "schemathesis.toml"
    config.write_text(config_toml())

    env = dict(os.environ)
    env.setdefault("SCHEMATHESIS_TELEMETRY", "false")
    env["NO_COLOR"] = "1"

    def run(token: str, report: str, extra: list[str]) -> int:
        cmd = [
            str(st), "--config-file", str(config), "run", str(spec_out),
            "--url", args.url,
            "-H", f"Authorization: token {token}",
            "--checks", ",".join(CHECKS),
            "--max-examples", str(args.max_examples),
            "--workers", "1",
            "--output-truncate", "false",
            "--report", "junit",
            "--report-dir", str(args.work / report),
        ]
        for path in EXCLUDED_PATHS:
            cmd += ["--exclude-path", path]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        if args.max_time is not None:
            cmd += ["--max-time", str(args.max_time)]
        cmd += extra
        shown = [c if not c.startswith("Authorization:") else "Authorization: token ***" for c in cmd]
        print("running: " + " ".join(shown), flush=True)
        return subprocess.run(cmd, env=env).returncode

    status = 0
    if args.user_token:
        # The identity of a user token (a user model with token_id, session_id, scopes);
        # first, as the main run may delete that user or their tokens.
        status = run(args.user_token, "report-user", ["--include-path", "/user"])
    return max(status, run(args.token, "report", []))


if __name__ == "__main__":
    sys.exit(main())
