#!/usr/bin/env bash
# Starts etcd and kube-apiserver from tools/bin/ the way the test harness does
# (see tools/README.md), checks /readyz with an admin client certificate, runs
# kubectl and helm against it, and stops everything again.
#
# Usage: tools/smoke-control-plane.sh            (after `make tools`)
#        KEEP=1 tools/smoke-control-plane.sh     leave the temp dir for inspection
set -euo pipefail

bin=$(cd "$(dirname "$0")" && pwd)/bin
for b in etcd kube-apiserver kubectl helm; do
  [[ -x $bin/$b ]] || { echo "missing $bin/$b: run \`make tools\`" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/cp-smoke.XXXXXX)
pids=()
cleanup() {
  # Stop in reverse order of start: kube-apiserver first (it shuts down fast
  # while etcd is still there), then etcd.
  local i start
  for (( i = ${#pids[@]} - 1; i >= 0; i-- )); do
    start=$SECONDS
    kill "${pids[i]}" 2>/dev/null || true
    wait "${pids[i]}" 2>/dev/null || true
    echo "stopped pid ${pids[i]} in $(( SECONDS - start ))s"
  done
  if [[ ${KEEP:-} == 1 ]]; then echo "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT

# A free TCP port on 127.0.0.1 (the Rust harness binds port 0 instead).
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 40000 ))
    [[ -z $(ss -ltnH "sport = :$p") ]] && { echo "$p"; return; }
  done
}
etcd_client=$(free_port)
etcd_peer=$(free_port)
api_port=$(free_port)

# --- certificates: one CA for serving and client certs, an RSA key for service accounts.
pki=$dir/pki
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 \
    -subj "/CN=test-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
    -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -out apiserver.crt -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
    -subj "/O=system:masters/CN=admin" 2>/dev/null
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 1 \
    -out admin.crt -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
)

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    (( SECONDS - start < secs )) || { echo "$name not ready after ${secs}s" >&2; return 1; }
    sleep 0.2
  done
  echo "$name ready after $(( SECONDS - start ))s"
}

# --- etcd
"$bin/etcd" \
  --name=default \
  --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_client" \
  --advertise-client-urls="http://127.0.0.1:$etcd_client" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
  --initial-cluster="default=http://127.0.0.1:$etcd_peer" \
  --unsafe-no-fsync \
  --log-level=warn \
  >"$dir/etcd.log" 2>&1 &
pids+=($!)
wait_for etcd 30 curl -fsS "http://127.0.0.1:$etcd_client/health"

# --- kube-apiserver
"$bin/kube-apiserver" \
  --etcd-servers="http://127.0.0.1:$etcd_client" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$api_port" \
  --cert-dir="$dir/apiserver" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=RBAC \
  --service-account-issuer="https://127.0.0.1:$api_port/" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range=10.0.0.0/24 \
  --disable-admission-plugins=ServiceAccount \
  --allow-privileged=true \
  >"$dir/apiserver.log" 2>&1 &
pids+=($!)
curl_api() { curl -fsS --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "https://127.0.0.1:$api_port$1"; }
if ! wait_for kube-apiserver 90 curl_api /readyz; then
  tail -40 "$dir/apiserver.log" >&2
  exit 1
fi
curl_api '/readyz?verbose' | tail -3
curl_api /version

# --- the real clients
cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    client-certificate: $pki/admin.crt
    client-key: $pki/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
EOF
export KUBECONFIG=$dir/kubeconfig
"$bin/kubectl" version
"$bin/kubectl" auth whoami
"$bin/kubectl" create namespace smoke
"$bin/kubectl" get namespaces
HELM_CACHE_HOME=$dir/helm/cache HELM_CONFIG_HOME=$dir/helm/config HELM_DATA_HOME=$dir/helm/data \
  "$bin/helm" list --all-namespaces
echo "control plane smoke test passed"
