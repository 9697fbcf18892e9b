#!/usr/bin/env bash
# make demo: the whole product on this machine, with no cluster and no image.
#
# Starts a local control plane (etcd + kube-apiserver on loopback, data in a
# temporary directory; hack/controlplane), installs the CRDs and RBAC
# (config/local), runs the manager and the token server as local processes with
# their production permissions, applies the samples, and walks through a token
# request, introspection, rotation and revocation with curl and kubectl. Then it
# protects an API with no code: the authorizer (latchkey authz, as its
# ServiceAccount with config/authz's RBAC), Caddy (built by hack/caddy.sh, cached
# under bin/caddy) with forward_auth to it, in front of an upstream that echoes the
# identity headers it gets (hack/demo/echo); curl shows 200, 403 and 401.
# Finally a third-party app: a partner's CRM (hack/demo/partnerapp) that a user
# installs into a workspace with authorization_code + PKCE, signing in at an
# upstream OpenID Provider (the example OP of github.com/zitadel/oidc, built by
# hack/oidc-provider.sh) and approving on the consent page; `kubectl delete
# oauthgrant` uninstalls it. One-shot mode plays the user with headless Chromium
# when it is installed, otherwise with an HTTP client that submits the same forms;
# interactive mode prints the URL for a person's own browser.
#
# Interactive by default: stays up until Ctrl-C, then stops everything it started
# and removes its temporary data. DEMO_ONESHOT=1 runs to the end and exits 0 only
# if every step worked (the end-to-end suite runs it so).
#
# Expects `make build envtest` to have run (make demo does it); builds the echo
# upstream into bin/, and Caddy with hack/caddy.sh unless `make caddy` already did
# (minutes the first time, then cached in bin/caddy/).
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

# The upstream and the proxy of the authorizer's part, the partner app and the
# upstream OpenID Provider, built before anything starts.
go build -o "$BIN/latchkey-demo-echo" ./hack/demo/echo
go build -o "$BIN/latchkey-demo-partnerapp" ./hack/demo/partnerapp
CADDY="$(hack/caddy.sh | tail -n 1)"
OIDC_PROVIDER="$(hack/oidc-provider.sh | tail -n 1)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-demo.XXXXXX")"
PIDS=()

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ ${#PIDS[@]} -gt 0 ]; then
		echo
		echo "==> stopping the partner app, Caddy, the echo upstream, the authorizer, the manager, the token server, the OpenID Provider and the control plane"
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

# start_other NAME COMMAND...: runs COMMAND in the background, logging to $WORK/NAME.log.
start_other() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
}

# through_proxy METHOD PATH [CURL ARGS...]: one request through Caddy. Prints the
# status, the WWW-Authenticate challenge (if any) and the body; sets STATUS.
through_proxy() {
	local method=$1 path=$2
	shift 2
	STATUS="$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$method" "$@" "$PROXY$path")"
	echo "HTTP $STATUS"
	tr -d '\r' <"$WORK/headers" | grep -i '^www-authenticate:' || true
	cat "$WORK/body"
}
# status_through_proxy METHOD PATH [CURL ARGS...]: prints only the status.
status_through_proxy() {
	local method=$1 path=$2
	shift 2
	curl -sS -o /dev/null -w '%{http_code}' -X "$method" "$@" "$PROXY$path"
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

# The demo user of the upstream OpenID Provider; RBAC knows her by her email
# (the token server's --oidc-username-claim=email, as kube-apiserver's would be).
DEMO_USER=alice DEMO_PASSWORD=latchkey-demo DEMO_EMAIL=alice@example.com
OP_PORT="$(free_port)"
OP_ISSUER="http://localhost:$OP_PORT/"
OP_CLIENT_ID=web OP_CLIENT_SECRET=secret # the example provider's own client

step "Starting a local control plane (etcd + kube-apiserver on loopback; data in $WORK)"
"$BIN/latchkey-controlplane" --dir "$WORK" >"$WORK/controlplane.log" 2>&1 &
PIDS+=($!)
wait_until 120 "the control plane did not start" test -f "$WORK/ready"
export KUBECONFIG="$WORK/admin.kubeconfig"
say "kube-apiserver at $(cat "$WORK/ready")"

step "Installing the CRDs and RBAC (config/local: the production roles, bound to the local processes' users)"
run kubectl apply --server-side -k config/local | sed 's/^/  /'
run kubectl wait --for condition=established --timeout=60s crd/apikeys.latchkey.dev crd/oauthclients.latchkey.dev

step "Starting the upstream OpenID Provider users sign in at (zitadel/oidc's example OP, $OP_ISSUER)"
cat >"$WORK/oidc-users.json" <<USERS
{"u-alice": {"ID": "u-alice", "Username": "$DEMO_USER", "Password": "$DEMO_PASSWORD", "FirstName": "Alice", "LastName": "Demo",
             "Email": "$DEMO_EMAIL", "EmailVerified": true, "PreferredLanguage": "en"}}
USERS
PORT="$OP_PORT" REDIRECT_URI="$ISSUER/oauth2/callback" USERS_FILE="$WORK/oidc-users.json" start_other oidc-provider "$OIDC_PROVIDER"
wait_until 30 "the OpenID Provider did not start (see oidc-provider.log)" curl -fsS "${OP_ISSUER}.well-known/openid-configuration"
say "the token server signs users in there as client $OP_CLIENT_ID; its secret goes in the Secret the token server may read by name"
run kubectl create secret generic latchkey-oidc-client -n latchkey-system --from-literal=client-secret="$OP_CLIENT_SECRET"

step "Starting the manager and the token server as local processes"
start manager "$WORK/latchkey-manager.kubeconfig" manager \
	--leader-elect --namespace=latchkey-system \
	--metrics-bind-address=0 --health-probe-bind-address="127.0.0.1:$(free_port)" \
	--issuer-url="$ISSUER"
start tokenserver "$WORK/latchkey-tokenserver.kubeconfig" tokenserver \
	--listen-address="127.0.0.1:$TOKEN_PORT" --metrics-bind-address="127.0.0.1:$(free_port)" \
	--issuer-url="$ISSUER" --signing-key-namespace=latchkey-system --last-used-flush-interval=2s \
	--oidc-issuer-url="$OP_ISSUER" --oidc-client-id="$OP_CLIENT_ID" --oidc-username-claim=email
say "the token server is ready once its caches have synced and the manager has created the signing keys"
wait_until 60 "the token server did not become ready (see tokenserver.log and manager.log)" curl -fsS "$ISSUER/readyz"
say "token server at $ISSUER"

step "Applying the samples (config/samples): two APIKeys, two OAuthClients and an API"
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
run curl -sS -u "$CLIENT_ID:not-the-secret" -d grant_type=client_credentials "$ISSUER/oauth2/token" # gitleaks:allow (a wrong secret, on purpose)
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

step "The edge authorizer: protect an API with no code (latchkey authz, Caddy forward_auth, an echo upstream)"
say "the authorizer runs as its ServiceAccount, with config/authz's RBAC: list/watch the three kinds,"
say "patch apikeys/status (last use), get/watch the one ConfigMap latchkey-jwks; no Secret at all"
run kubectl apply --server-side -k config/authz/local | sed 's/^/  /'
SERVER="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')"
CA_DATA="$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
printf '$ kubectl create token latchkey-authz -n latchkey-system --duration=24h   # into %s\n' "$WORK/latchkey-authz.kubeconfig"
AUTHZ_TOKEN="$(kubectl create token latchkey-authz -n latchkey-system --duration=24h)"
(
	umask 077
	cat >"$WORK/latchkey-authz.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$SERVER", certificate-authority-data: "$CA_DATA"}}]
users: [{name: latchkey-authz, user: {token: "$AUTHZ_TOKEN"}}]
contexts: [{name: local, context: {cluster: local, user: latchkey-authz}}]
current-context: local
EOF
)
unset AUTHZ_TOKEN
AUTHZ_GRPC_PORT="$(free_port)" AUTHZ_HTTP_PORT="$(free_port)" AUTHZ_METRICS_PORT="$(free_port)"
start authz "$WORK/latchkey-authz.kubeconfig" authz \
	--grpc-bind-address="127.0.0.1:$AUTHZ_GRPC_PORT" --http-bind-address="127.0.0.1:$AUTHZ_HTTP_PORT" \
	--metrics-bind-address="127.0.0.1:$AUTHZ_METRICS_PORT" \
	--issuer-url="$ISSUER" --jwks-namespace=latchkey-system --last-used-flush-interval=2s
wait_until 60 "the authorizer did not become ready (see authz.log)" curl -fsS "http://127.0.0.1:$AUTHZ_HTTP_PORT/readyz"
say "authorizer: Envoy ext_authz (gRPC) at 127.0.0.1:$AUTHZ_GRPC_PORT, forward-auth at http://127.0.0.1:$AUTHZ_HTTP_PORT/authz"

ECHO_PORT="$(free_port)" PROXY_PORT="$(free_port)"
PROXY="http://127.0.0.1:$PROXY_PORT"
start_other echo "$BIN/latchkey-demo-echo" --listen-address="127.0.0.1:$ECHO_PORT"
cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	auto_https off
}

http://127.0.0.1:$PROXY_PORT {
	bind 127.0.0.1
	# Ask the authorizer first; on 200 copy the identity headers (a copy the client
	# sent is removed, even when the authorizer omits one: Caddy >= 2.11.2).
	forward_auth 127.0.0.1:$AUTHZ_HTTP_PORT {
		uri /authz/api/default/leads
		copy_headers X-Latchkey-Subject X-Latchkey-Credential-Kind X-Latchkey-Namespace X-Latchkey-Name X-Latchkey-Client-Id X-Latchkey-Key-Id X-Latchkey-Environment X-Latchkey-Scopes X-Latchkey-Api
	}
	# forward_auth sets these for the authorizer only: drop a client's forged copies.
	request_header -X-Forwarded-Method
	request_header -X-Forwarded-Uri
	reverse_proxy 127.0.0.1:$ECHO_PORT
}
EOF
say "Caddy $("$CADDY" version | cut -d' ' -f1) in front of the echo upstream (127.0.0.1:$ECHO_PORT), with this Caddyfile:"
sed 's/^/  /' "$WORK/Caddyfile"
XDG_CONFIG_HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy" start_other caddy "$CADDY" run --config "$WORK/Caddyfile" --adapter caddyfile
wait_until 30 "Caddy did not start (see caddy.log)" curl -sS -o /dev/null "$PROXY/"

say "the samples' API leads (config/samples/latchkey_v1alpha1_api.yaml): its scope catalogue, and the scopes each route needs"
sed -n '/^spec:/,$p' config/samples/latchkey_v1alpha1_api.yaml | sed 's/^/  /'
run kubectl get lkapi -n "$NS" -o wide
say "a live key that may only read, and a reporting job's client whose tokens are for this API (its identifier)"
cat >"$WORK/leads-credentials.yaml" <<'EOF'
apiVersion: latchkey.dev/v1alpha1
kind: APIKey
metadata:
  name: leads-reader
  namespace: default
spec:
  environment: live
  scopes: ["leads:read"]
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata:
  name: leads-report
  namespace: default
spec:
  scopes: ["leads:read"]
  audiences: ["https://api.example.com/leads"]
EOF
sed 's/^/  /' "$WORK/leads-credentials.yaml"
run kubectl apply --server-side -f "$WORK/leads-credentials.yaml" | sed 's/^/  /'
run kubectl wait --for=condition=Ready --timeout=60s -n "$NS" lkapi/leads apikey/leads-reader oauthclient/leads-report
LEADS_KEY="$(secret_value leads-reader-apikey api-key)"
wait_until 10 "the authorizer does not accept the new key" \
	bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H \"Authorization: Bearer \$0\" $PROXY/v1/leads)\" = 200 ]" "$LEADS_KEY"

say "GET /v1/leads needs leads:read, which the key has: 200, and the upstream learns who called"
say "(LEADS_KEY is from Secret leads-reader-apikey; the forged X-Latchkey-Subject never reaches the upstream)"
printf '$ curl -sS -H "Authorization: Bearer $LEADS_KEY" -H "X-Latchkey-Subject: admin" %s/v1/leads\n' "$PROXY"
through_proxy GET /v1/leads -H "Authorization: Bearer $LEADS_KEY" -H "X-Latchkey-Subject: admin"
[ "$STATUS" = 200 ] || fail "GET /v1/leads with a leads:read key answered $STATUS"
grep -q '"X-Latchkey-Subject": "apikey:default/leads-reader"' "$WORK/body" || fail "the upstream did not get the caller's identity"
! grep -q '"admin"' "$WORK/body" || fail "a forged identity header reached the upstream"

say "POST /v1/leads needs leads:write, which the key lacks: 403 insufficient_scope (RFC 6750)"
printf '$ curl -sS -X POST -H "Authorization: Bearer $LEADS_KEY" %s/v1/leads\n' "$PROXY"
through_proxy POST /v1/leads -H "Authorization: Bearer $LEADS_KEY"
[ "$STATUS" = 403 ] && grep -q insufficient_scope "$WORK/body" || fail "POST /v1/leads with a leads:read key answered $STATUS"

say "an access token works too: leads-report's, verified with the public keys the manager publishes in"
say "ConfigMap latchkey-system/latchkey-jwks (REPORT_ID and REPORT_SECRET come from Secret leads-report-oauthclient)"
REPORT_ID="$(secret_value leads-report-oauthclient client_id)"
REPORT_SECRET="$(secret_value leads-report-oauthclient client_secret)"
REPORT_TOKEN="$(curl -sS -u "$REPORT_ID:$REPORT_SECRET" -d grant_type=client_credentials "$ISSUER/oauth2/token" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')"
[[ "$REPORT_TOKEN" == *.*.* ]] || fail "leads-report got no access token"
printf '$ curl -sS -H "Authorization: Bearer $REPORT_TOKEN" %s/v1/leads\n' "$PROXY"
through_proxy GET /v1/leads -H "Authorization: Bearer $REPORT_TOKEN"
[ "$STATUS" = 200 ] && grep -q '"X-Latchkey-Credential-Kind": "access_token"' "$WORK/body" || fail "GET /v1/leads with leads-report's access token answered $STATUS"

say "no credential at all: 401 with a bare challenge (RFC 6750 3.1)"
printf '$ curl -sS %s/v1/leads\n' "$PROXY"
through_proxy GET /v1/leads
[ "$STATUS" = 401 ] || fail "a request without a credential answered $STATUS"

say "revoking the key refuses it at the edge as soon as the authorizer's watch sees it"
run kubectl patch apikey leads-reader -n "$NS" --type merge -p '{"spec":{"revoked":true}}'
REVOKED_AT="$(date +%s%N)"
wait_until 5 "the revoked key still passes the proxy" \
	bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H \"Authorization: Bearer \$0\" $PROXY/v1/leads)\" = 401 ]" "$LEADS_KEY"
say "refused $((($(date +%s%N) - REVOKED_AT) / 1000000)) ms after kubectl patch returned (polling every 0.2 s):"
printf '$ curl -sS -H "Authorization: Bearer $LEADS_KEY" %s/v1/leads\n' "$PROXY"
through_proxy GET /v1/leads -H "Authorization: Bearer $LEADS_KEY"
[ "$STATUS" = 401 ] || fail "the revoked key answered $STATUS"

say "revoking the client refuses its outstanding tokens at the edge too, long before they expire"
run kubectl latchkey revoke oauthclient/leads-report -n "$NS"
wait_until 5 "the revoked client's token still passes the proxy" \
	bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H \"Authorization: Bearer \$0\" $PROXY/v1/leads)\" = 401 ]" "$REPORT_TOKEN"
printf '$ curl -sS -H "Authorization: Bearer $REPORT_TOKEN" %s/v1/leads\n' "$PROXY"
through_proxy GET /v1/leads -H "Authorization: Bearer $REPORT_TOKEN"
[ "$STATUS" = 401 ] || fail "the revoked client's token answered $STATUS"

say "the authorizer's decisions, by API and outcome (no per-credential label):"
printf "\$ curl -sS http://127.0.0.1:%s/metrics | grep '^latchkey_authz_decisions_total'\n" "$AUTHZ_METRICS_PORT"
curl -sS "http://127.0.0.1:$AUTHZ_METRICS_PORT/metrics" | grep '^latchkey_authz_decisions_total'

step "Third-party apps: a partner's CRM installed into a workspace (authorization_code + PKCE, consent, OAuthGrant)"
say "the default namespace becomes a workspace, and RBAC lets $DEMO_EMAIL install apps there"
run kubectl label namespace "$NS" latchkey.dev/workspace=true --overwrite
run kubectl create rolebinding alice-installs-apps -n "$NS" --clusterrole=latchkey-oauthgrant-editor-role --user="$DEMO_EMAIL"
APP_PORT="$(free_port)"
say "the partner publishes its app from its own namespace: a client that may ask for leads:read"
cat >"$WORK/partner-app.yaml" <<APP
apiVersion: v1
kind: Namespace
metadata:
  name: partners
---
apiVersion: latchkey.dev/v1alpha1
kind: OAuthClient
metadata:
  name: acme-crm
  namespace: partners
spec:
  displayName: Acme CRM
  grantTypes: [authorization_code, refresh_token]
  redirectURIs: ["http://127.0.0.1:$APP_PORT/callback"]
  scopes: ["leads:read"]
  audiences: ["https://api.example.com/leads"]
APP
sed 's/^/  /' "$WORK/partner-app.yaml"
run kubectl apply --server-side -f "$WORK/partner-app.yaml" | sed 's/^/  /'
run kubectl wait --for=condition=Ready --timeout=60s -n partners oauthclient/acme-crm
APP_ID="$(kubectl get secret acme-crm-oauthclient -n partners -o jsonpath='{.data.client_id}' | base64 -d)"
APP_SECRET="$(kubectl get secret acme-crm-oauthclient -n partners -o jsonpath='{.data.client_secret}' | base64 -d)"
APP_ARGS=(--issuer="$ISSUER" --client-id="$APP_ID" --client-secret="$APP_SECRET" --listen-address="127.0.0.1:$APP_PORT"
	--api="$PROXY/v1/leads" --user="$DEMO_USER" --password="$DEMO_PASSWORD" --workspace="$NS" --token-file="$WORK/app-token")
if [ -n "$ONESHOT" ]; then
	# DEMO_DRIVE=http forces the HTTP client even where Chromium is installed.
	CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
	DRIVE="${DEMO_DRIVE:-$([ -n "$CHROMIUM" ] && echo browser || echo http)}"
	if [ "$DRIVE" = browser ]; then
		say "headless Chromium ($CHROMIUM) plays the user: it signs in at the provider's login form and approves on the consent page"
	else
		say "an HTTP client with a cookie jar plays the user, submitting the same forms (Chromium: ${CHROMIUM:-not installed; apt-get install chromium})"
	fi
	printf '$ latchkey-demo-partnerapp --client-id=$APP_ID --client-secret=$APP_SECRET --drive=%s ...\n' "$DRIVE"
	"$BIN/latchkey-demo-partnerapp" "${APP_ARGS[@]}" --drive="$DRIVE" --chromium="${CHROMIUM:-chromium}" | sed -E 's/(code_challenge|state)=[^&]*/\1=…/g'
	run kubectl get oauthgrants -n "$NS"
	APP_TOKEN="$(cat "$WORK/app-token")"
	say "the app's token acts for $DEMO_EMAIL in workspace $NS, through the same proxy:"
	printf '$ curl -sS -H "Authorization: Bearer $APP_TOKEN" %s/v1/leads\n' "$PROXY"
	through_proxy GET /v1/leads -H "Authorization: Bearer $APP_TOKEN"
	[ "$STATUS" = 200 ] && grep -q "\"X-Latchkey-Subject\": \"$DEMO_EMAIL\"" "$WORK/body" || fail "the app's token answered $STATUS"
	say "uninstalling the app from the workspace ends its tokens at once"
	run kubectl delete oauthgrant "app-$APP_ID" -n "$NS"
	wait_until 5 "the uninstalled app's token still passes the proxy" \
		bash -c "[ \"\$(curl -sS -o /dev/null -w '%{http_code}' -H \"Authorization: Bearer \$0\" $PROXY/v1/leads)\" = 401 ]" "$APP_TOKEN"
	through_proxy GET /v1/leads -H "Authorization: Bearer $APP_TOKEN"
	[ "$STATUS" = 401 ] || fail "the uninstalled app's token answered $STATUS"
else
	start_other partnerapp "$BIN/latchkey-demo-partnerapp" "${APP_ARGS[@]}" --drive=none
	wait_until 10 "the partner app did not start (see partnerapp.log)" grep -q '^authorize: ' "$WORK/partnerapp.log"
	APP_AUTHORIZE_URL="$(sed -n 's/^authorize: //p' "$WORK/partnerapp.log")"
fi

step "Everything worked"
cat <<EOF
  kubeconfig (admin):  export KUBECONFIG=$KUBECONFIG
  token server:        $ISSUER  (metadata: $ISSUER/.well-known/oauth-authorization-server)
  authorizer:          grpc 127.0.0.1:$AUTHZ_GRPC_PORT, http://127.0.0.1:$AUTHZ_HTTP_PORT/authz, metrics http://127.0.0.1:$AUTHZ_METRICS_PORT/metrics
  leads API via Caddy: $PROXY/v1/leads  (Caddyfile: $WORK/Caddyfile)
  logs:                $WORK/{manager,tokenserver,authz,caddy,echo,oidc-provider,partnerapp,controlplane}.log
  try:                 kubectl describe apikey billing -n $NS
                       kubectl latchkey revoke oauthclient/crm-sync -n $NS
                       curl -i -H "Authorization: Bearer \$(kubectl get secret billing-apikey -n $NS -o jsonpath='{.data.api-key}' | base64 -d)" $PROXY/v1/leads
  upstream sign-in:    $OP_ISSUER  (user $DEMO_USER, password $DEMO_PASSWORD)
EOF
if [ -z "$ONESHOT" ]; then
	cat <<EOF
  install the partner app yourself: open this URL in a browser on this machine, sign in as
  $DEMO_USER / $DEMO_PASSWORD, pick workspace $NS and approve; the app's page shows its API calls:
    $APP_AUTHORIZE_URL
  then: kubectl get oauthgrants -n $NS; kubectl delete oauthgrant app-$APP_ID -n $NS
EOF
fi
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
