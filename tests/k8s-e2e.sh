#!/usr/bin/env bash
# hubfleet on a real Kubernetes cluster, end to end: deploy a hub with the manifests of
# `hubfleet render k8s`, start a user's server through the REST API, run code in a kernel (REST
# and WebSocket), stop the server, and delete everything it made.
#
#   KUBECONFIG=~/.kube/config HUBFLEET_IMAGE=registry.example.org/hubfleet:dev tests/k8s-e2e.sh
#
# Without a cluster (KUBECONFIG unset) it says so and exits 0. `--render-only` prints the
# manifests it would apply and touches no cluster (tests/render_k8s.rs validates them). It
# targets hubfleet with its
# Kubernetes spawner (`hubfleet.spawner: kubernetes`); a hub built without it stops at start
# with a message saying so, and this script fails there.
#
# Environment:
#   KUBECONFIG                 the cluster (required; the current context is used)
#   HUBFLEET_IMAGE             the hubfleet image the cluster can pull, REPOSITORY:TAG; the
#                              repository's last segment starts with `hubfleet` (docker build .)
#   HUBFLEET_E2E_USER_IMAGE    the users' image (default quay.io/jupyter/base-notebook:latest)
#   HUBFLEET_E2E_DB            sqlite-pvc (default; needs a default StorageClass) or sqlite-memory
#   HUBFLEET_E2E_NAMESPACE     the namespace to make and delete (default hubfleet-e2e-<pid>)
#   HUBFLEET_E2E_KEEP=1        keep the namespace afterwards, to look around
#   HUBFLEET_BIN               the hubfleet binary that renders (default: built with cargo)
#   HUBFLEET_SHARED_DIR        the shared reference material with z2jh's chart (default ../shared)
set -euo pipefail

render_only=
[ "${1:-}" = --render-only ] && render_only=1
if [ -z "$render_only" ] && [ -z "${KUBECONFIG:-}" ]; then
  echo "skipped: no cluster configured (KUBECONFIG unset)"
  exit 0
fi
: "${HUBFLEET_IMAGE:?set HUBFLEET_IMAGE to the hubfleet image the cluster can pull (REPOSITORY:TAG)}"

root=$(cd "$(dirname "$0")/.." && pwd)
namespace=${HUBFLEET_E2E_NAMESPACE:-hubfleet-e2e-$$}
user_image=${HUBFLEET_E2E_USER_IMAGE:-quay.io/jupyter/base-notebook:latest}
db_type=${HUBFLEET_E2E_DB:-sqlite-pvc}
export HUBFLEET_SHARED_DIR=${HUBFLEET_SHARED_DIR:-$root/../shared}
port=${HUBFLEET_E2E_PORT:-18080}
base=http://127.0.0.1:$port

step() { echo "== $*"; }
fail() { echo "k8s-e2e: FAILED: $*" >&2; exit 1; }
tools=(openssl)
[ -n "$render_only" ] || tools+=(kubectl curl python3)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
if [ -z "$render_only" ]; then
  kubectl version --request-timeout=10s >/dev/null || fail "the cluster of KUBECONFIG does not answer"
fi

last_segment=${HUBFLEET_IMAGE##*/}
case "$last_segment" in
  *:*) ;;
  *) fail "HUBFLEET_IMAGE=$HUBFLEET_IMAGE: give REPOSITORY:TAG" ;;
esac
image_name=${HUBFLEET_IMAGE%:*}
image_tag=${last_segment##*:}
case "${image_name##*/}" in
  hubfleet*) ;;
  *) fail "HUBFLEET_IMAGE=$HUBFLEET_IMAGE: the repository's last segment must start with hubfleet (render k8s runs the default image otherwise)" ;;
esac

hubfleet=${HUBFLEET_BIN:-}
if [ -z "$hubfleet" ]; then
  step "building hubfleet"
  (cd "$root" && cargo build --quiet -p hubfleet)
  hubfleet=$root/target/debug/hubfleet
fi

work=$(mktemp -d)
forward_pid=
created_namespace=
cleanup() {
  [ -n "$forward_pid" ] && kill "$forward_pid" 2>/dev/null || true
  if [ -z "$created_namespace" ]; then
    :
  elif [ "${HUBFLEET_E2E_KEEP:-}" = 1 ]; then
    echo "kept namespace $namespace (HUBFLEET_E2E_KEEP=1): kubectl delete namespace $namespace"
  else
    kubectl delete namespace "$namespace" --ignore-not-found --wait=true --timeout=300s >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

token=$(openssl rand -hex 32)
openssl rand -hex 32 >"$work/seed"
cat >"$work/values.yaml" <<EOF
hub:
  image: {name: "$image_name", tag: "$image_tag", pullPolicy: IfNotPresent}
  config:
    JupyterHub: {authenticator_class: "null"}
  db: {type: $db_type}
  services:
    e2e: {admin: true, api_token: "$token"}
proxy:
  service: {type: ClusterIP}
singleuser:
  image: {name: "${user_image%:*}", tag: "${user_image##*:}"}
  storage: {type: none}
  startTimeout: 600
cull: {enabled: false}
EOF

"$hubfleet" render k8s --values "$work/values.yaml" --namespace "$namespace" \
  --release-name e2e --secret-seed-file "$work/seed" >"$work/hub.yaml"
if [ -n "$render_only" ]; then
  cat "$work/hub.yaml"
  exit 0
fi
step "applying the hub's manifests in namespace $namespace"
kubectl create namespace "$namespace" >/dev/null
created_namespace=1
kubectl apply -f "$work/hub.yaml"
if ! kubectl -n "$namespace" rollout status deployment/hub --timeout=600s; then
  kubectl -n "$namespace" describe pods -l component=hub | tail -40 >&2 || true
  kubectl -n "$namespace" logs deployment/hub --tail=60 >&2 || true
  fail "the hub did not become ready"
fi

step "reaching the hub through the proxy-public Service (port-forward on $port)"
kubectl -n "$namespace" port-forward service/proxy-public "$port:80" >"$work/forward.log" 2>&1 &
forward_pid=$!
for _ in $(seq 60); do
  curl -fsS "$base/hub/health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "$base/hub/health" >/dev/null || fail "no answer at $base/hub/health: $(cat "$work/forward.log")"

api() { curl -fsS -H "Authorization: token $token" "$@"; }

step "starting alice's server"
api -X POST "$base/hub/api/users/alice" >/dev/null
api -X POST "$base/hub/api/users/alice/server" >/dev/null
ready=
for _ in $(seq 600); do
  if api "$base/hub/api/users/alice" | python3 -c \
      'import json,sys; s=json.load(sys.stdin)["servers"].get(""); sys.exit(0 if s and s.get("ready") else 1)'; then
    ready=1
    break
  fi
  sleep 1
done
if [ -z "$ready" ]; then
  kubectl -n "$namespace" get pods -o wide >&2 || true
  kubectl -n "$namespace" logs deployment/hub --tail=60 >&2 || true
  fail "alice's server did not become ready"
fi
kubectl -n "$namespace" get pods -l component=singleuser-server,hub.jupyter.org/username=alice \
  -o name | grep -q . || fail "no pod for alice's server"

step "running code in a kernel (REST, then WebSocket)"
kernel=$(api -X POST -H "Content-Type: application/json" -d '{"name": "python3"}' \
  "$base/user/alice/api/kernels" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --progress-bar off websocket-client
HUB_TOKEN=$token WS_URL="ws://127.0.0.1:$port/user/alice/api/kernels/$kernel/channels" \
  "$work/venv/bin/python" - <<'PY'
import json, os, time, uuid
import websocket

ws = websocket.create_connection(
    os.environ["WS_URL"], header=[f"Authorization: token {os.environ['HUB_TOKEN']}"], timeout=60
)
msg_id = uuid.uuid4().hex
ws.send(json.dumps({
    "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "e2e",
               "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
    "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
    "content": {"code": "print(6 * 7)", "silent": False, "store_history": False,
                "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
}))
output, status, deadline = "", None, time.time() + 120
while time.time() < deadline and (status is None or "42" not in output):
    reply = json.loads(ws.recv())
    if reply.get("parent_header", {}).get("msg_id") != msg_id:
        continue
    if reply["msg_type"] == "stream":
        output += reply["content"]["text"]
    elif reply["msg_type"] == "execute_reply":
        status = reply["content"]["status"]
ws.close()
assert status == "ok" and "42" in output, f"kernel said status={status!r} output={output!r}"
print("kernel printed", output.strip())
PY
api -X DELETE "$base/user/alice/api/kernels/$kernel" >/dev/null

step "stopping alice's server"
api -X DELETE "$base/hub/api/users/alice/server" >/dev/null
gone=
for _ in $(seq 300); do
  if ! kubectl -n "$namespace" get pods -l component=singleuser-server,hub.jupyter.org/username=alice \
      -o name | grep -q .; then
    gone=1
    break
  fi
  sleep 1
done
[ -n "$gone" ] || fail "alice's pod is still there after the stop"
api "$base/hub/api/users/alice" | python3 -c \
  'import json,sys; sys.exit(0 if not json.load(sys.stdin)["servers"] else 1)' \
  || fail "the hub still lists alice's server"

echo "k8s-e2e: passed"
