#!/usr/bin/env bash
# make demo: the whole product on this machine, with no cluster and no image.
#
# Starts a local control plane (etcd + kube-apiserver on loopback, data in a
# temporary directory; hack/controlplane), installs the CRDs and RBAC
# (config/local), runs the manager and the token server as local processes with
# their production permissions, applies the samples, and walks through a token
# request, introspection, rotation and revocation with curl and kubectl.
#
# Interactive by default: stays up until Ctrl-C, then stops everything it started
# and removes its temporary data. DEMO_ONESHOT=1 runs to the end and exits 0 only
# if every step worked (the end-to-end suite runs it so).
#
# Expects `make build envtest-kubectl` to have run (make demo does it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ONESHOT="${DEMO_ONESHOT:-}"
BIN="$PWD/bin"
K8S_BIN="$BIN/k8s/${K8S_VERSION:-1.37.2}"
NS=default
export PATH="$BIN:$K8S_BIN:$PATH" # kubectl, and kubectl-latchkey as its plugin

for tool in latchkey latchkey-controlplane kubectl-latchkey k8s/"${K8S_VERSION:-1.37.2}"/kubectl; do
	[ -x "$BIN/$tool" ] || { echo "demo: $BIN/$tool is missing; run \`make demo\`" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: curl is required (apt-get install curl)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-demo.XXXXXX")"
PIDS=()

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ ${#PIDS[@]} -gt 0 ]; then
		echo
		echo "==> stopping the manager, the token server and the control plane"
		for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
		for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	fi
	if [ "$status" -ne 0 ] && [ "$status" -ne 130 ]; then
		for log in "$WORK"/*.log; do
			[ -f "$log" ] || continue
			echo "---- last lines of $(basename "$log")" >&2
			tail -n 20 "$log" >&2
		done
	fi
	rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bold=$'\033[1m' dim=$'\033[2m' reset=$'\033[0m'
[ -t 1 ] || { bold='' dim='' reset=''; }
step() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
say() { printf '%s# %s%s\n' "$dim" "$*" "$reset"; }
# run prints a command as the user would type it, then runs it.
run() { printf '$ %s\n' "$*"; "$@"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
	local seconds=$1 what=$2
	shift 2
	local deadline=$((SECONDS + seconds))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || fail "$what (waited ${seconds}s)"
		all_running
		sleep 0.2
	done
}

all_running() {
	for pid in "${PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || fail "a process of the demo exited (its log is below)"
	done
}

# free_port prints a loopback TCP port nobody listens on, below Linux's ephemeral
# range (32768 and up), where an outgoing connection could take it first.
free_port() {
	local port
	for _ in $(seq 100); do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	fail "no free port"
}

# start NAME KUBECONFIG ARGS...: runs bin/latchkey ARGS in the background, logging to $WORK/NAME.log.
start() {
	local name=$1 kubeconfig=$2
	shift 2
	KUBECONFIG="$kubeconfig" "$BIN/latchkey" "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
}

secret_value() { # secret_value SECRET KEY
	kubectl get secret "$1" -n "$NS" -o "jsonpath={.data.$2}" | base64 -d
}

# claims prints the payload of a JWT (base64url without padding).
claims() {
	local payload
	payload="$(cut -d. -f2 <<<"$1" | tr '_-' '/+')"
	while [ $((${#payload} % 4)) -ne 0 ]; do payload+="="; done
	base64 -d <<<"$payload"
	echo
}

# introspect TOKEN: asks the token server about TOKEN, as the leads-api resource server.
introspect() {
	curl -sS -u "$RS_CLIENT_ID:$RS_CLIENT_SECRET" --data-urlencode "token=$1" "$ISSUER/oauth2/introspect"
}
is_active() { introspect "$1" | grep -q '"active":true'; }
is_inactive() { introspect "$1" | grep -q '"active":false'; }

TOKEN_PORT="${DEMO_TOKEN_PORT:-$(free_port)}"
ISSUER="http://127.0.0.1:$TOKEN_PORT"

step "Starting a local control plane (etcd + kube-apiserver on loopback; data in $WORK)"
"$BIN/latchkey-controlplane" --dir "$WORK" >"$WORK/controlplane.log" 2>&1 &
PIDS+=($!)
wait_until 120 "the control plane did not start" test -f "$WORK/ready"
export KUBECONFIG="$WORK/admin.kubeconfig"
say "kube-apiserver at $(cat "$WORK/ready")"

step "Installing the CRDs and RBAC (config/local: the production roles, bound to the local processes' users)"
run kubectl apply --server-side -k config/local | sed 's/^/  /'
run kubectl wait --for condition=established --timeout=60s crd/apikeys.latchkey.dev crd/oauthclients.latchkey.dev

step "Starting the manager and the token server as local processes"
start manager "$WORK/latchkey-manager.kubeconfig" manager \
	--leader-elect --namespace=latchkey-system \
	--metrics-bind-address=0 --health-probe-bind-address="127.0.0.1:$(free_port)" \
	--issuer-url="$ISSUER"
start tokenserver "$WORK/latchkey-tokenserver.kubeconfig" tokenserver \
	--listen-address="127.0.0.1:$TOKEN_PORT" --metrics-bind-address="127.0.0.1:$(free_port)" \
	--issuer-url="$ISSUER" --signing-key-namespace=latchkey-system --last-used-flush-interval=2s
say "the token server is ready once its caches have synced and the manager has created the signing keys"
wait_until 60 "the token server did not become ready (see tokenserver.log and manager.log)" curl -fsS "$ISSUER/readyz"
say "token server at $ISSUER"

step "Applying the samples (config/samples): two APIKeys and two OAuthClients"
run kubectl apply --server-side -k config/samples | sed 's/^/  /'
run kubectl wait --for=condition=Ready --timeout=60s -n "$NS" apikey/billing apikey/partner-sandbox oauthclient/crm-sync oauthclient/leads-api
run kubectl get apikeys,oauthclients -n "$NS"

step "The plaintext lives only in Secrets; the status holds a hash"
run kubectl get apikey billing -n "$NS" -o jsonpath='{.status.credentials[0].hash}{"\n"}'
API_KEY="$(secret_value billing-apikey api-key)"
say "the key in Secret billing-apikey (what a workload mounts): ${API_KEY:0:12}… (${#API_KEY} characters)"
[[ "$API_KEY" =~ ^lk_live_[0-9A-Za-z]{49}$ ]] || fail "the API key has an unexpected format"

CLIENT_ID="$(secret_value crm-sync-oauthclient client_id)"
CLIENT_SECRET="$(secret_value crm-sync-oauthclient client_secret)"
RS_CLIENT_ID="$(secret_value leads-api-oauthclient client_id)"
RS_CLIENT_SECRET="$(secret_value leads-api-oauthclient client_secret)"

step "A workload exchanges its client credentials for an access token (client_credentials)"
say "CLIENT_ID and CLIENT_SECRET come from Secret crm-sync-oauthclient"
printf '$ curl -sS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=leads:read %s/oauth2/token\n' "$ISSUER"
TOKEN_RESPONSE="$(curl -sS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials -d scope=leads:read "$ISSUER/oauth2/token")"
echo "$TOKEN_RESPONSE" | sed -E 's/("access_token":"[^.]{12})[^"]*"/\1…"/'
grep -q '"token_type":"Bearer"' <<<"$TOKEN_RESPONSE" || fail "no token: $TOKEN_RESPONSE"
ACCESS_TOKEN="$(sed -E 's/.*"access_token":"([^"]+)".*/\1/' <<<"$TOKEN_RESPONSE")"
say "its claims (RFC 9068), verifiable against $ISSUER/oauth2/jwks:"
claims "$ACCESS_TOKEN"
grep -q "\"client_id\":\"$CLIENT_ID\"" <(claims "$ACCESS_TOKEN") || fail "the token's claims do not name the client"

step "A wrong secret gets an RFC 6749 error, never a hint"
run curl -sS -u "$CLIENT_ID:not-the-secret" -d grant_type=client_credentials "$ISSUER/oauth2/token"
[ "$(curl -s -o /dev/null -w '%{http_code}' -u "$CLIENT_ID:x" -d grant_type=client_credentials "$ISSUER/oauth2/token")" = 401 ] || fail "a wrong secret was not refused"

step "The leads API introspects what its callers present (RFC 7662)"
say "as OAuthClient leads-api; first the API key, then the access token"
printf '$ curl -sS -u "$RS_CLIENT_ID:$RS_CLIENT_SECRET" --data-urlencode "token=$API_KEY" %s/oauth2/introspect\n' "$ISSUER"
introspect "$API_KEY"
is_active "$API_KEY" || fail "the API key is not active"
printf '$ curl -sS -u "$RS_CLIENT_ID:$RS_CLIENT_SECRET" --data-urlencode "token=$ACCESS_TOKEN" %s/oauth2/introspect\n' "$ISSUER"
introspect "$ACCESS_TOKEN"
is_active "$ACCESS_TOKEN" || fail "the access token is not active"

step "Rotation: a new key, and the old one keeps working for the grace period (24h here)"
run kubectl annotate apikey billing -n "$NS" --overwrite "latchkey.dev/rotate=$(date +%s)"
wait_until 30 "the key was not rotated" bash -c "[ \"\$(kubectl get secret billing-apikey -n $NS -o jsonpath='{.data.api-key}' | base64 -d)\" != '$API_KEY' ]"
NEW_KEY="$(secret_value billing-apikey api-key)"
wait_until 10 "the new key is not active" is_active "$NEW_KEY"
say "the old key, during its grace period (exp is when the grace period ends):"
introspect "$API_KEY"
is_active "$API_KEY" || fail "the old key stopped working before its grace period ended"

step "Revocation: every key of the APIKey stops working at once"
run kubectl patch apikey billing -n "$NS" --type merge -p '{"spec":{"revoked":true}}'
wait_until 2 "the revoked key is still active" is_inactive "$NEW_KEY"
introspect "$NEW_KEY"
is_inactive "$API_KEY" || fail "the key in its grace period survived the revocation"
run kubectl get apikey billing -n "$NS"

step "The kubectl plugin (bin/kubectl-latchkey) does the same with less typing"
run kubectl latchkey restore apikey/billing -n "$NS"
RESTORED_KEY="$(secret_value billing-apikey api-key)"
[ "$RESTORED_KEY" != "$NEW_KEY" ] && [ "$RESTORED_KEY" != "$API_KEY" ] || fail "a revoked key came back"
wait_until 10 "the restored APIKey's new key is not active" is_active "$RESTORED_KEY"
run kubectl latchkey rotate oauthclient/crm-sync -n "$NS"
run kubectl latchkey status apikey/billing -n "$NS"
run kubectl latchkey token oauthclient/crm-sync -n "$NS" -o json | sed -E 's/("access_token": "[^.]{12})[^"]*"/\1…"/'
run kubectl latchkey status -n "$NS"

step "Everything worked"
cat <<EOF
  kubeconfig (admin):  export KUBECONFIG=$KUBECONFIG
  token server:        $ISSUER  (metadata: $ISSUER/.well-known/oauth-authorization-server)
  logs:                $WORK/{manager,tokenserver,controlplane}.log
  try:                 kubectl describe apikey billing -n $NS
                       kubectl latchkey revoke oauthclient/crm-sync -n $NS
EOF
if [ -n "$ONESHOT" ]; then
	echo "demo: every step worked"
	exit 0
fi
echo
echo "Running until Ctrl-C; then every process stops and $WORK is removed."
while true; do
	all_running
	sleep 1
done
