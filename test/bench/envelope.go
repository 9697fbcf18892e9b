package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// The scale envelope (issue 25): at each key count, what every process holds as
// steady state, not as a high-water mark. For the Go processes (kube-apiserver,
// the manager, the token server, an authorizer) that is the heap in use right
// after a forced collection (/debug/pprof/heap?gc=1, runtime.MemStats.HeapInuse):
// what survives a GC, which the RSS of a process that collected a while ago
// overstates by its garbage and by memory not yet returned. For etcd it is the
// size of its database in use (etcd_mvcc_db_total_size_in_use_in_bytes). Per key
// is (at N - at 0) ÷ N.

// heapAfterGC is the HeapInuse of the process whose /debug/pprof/heap get
// fetches (debug=1 ends with runtime.MemStats), after a forced GC.
func heapAfterGC(get func(path string) ([]byte, error)) (int64, error) {
	data, err := get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
			return strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, fmt.Errorf("no HeapInuse in the heap profile")
}

// pprofGet fetches path from a process's pprof listener.
func pprofGet(addr string) func(string) ([]byte, error) {
	return func(path string) ([]byte, error) {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return nil, err
		}
		return getOK(http.DefaultClient, req, path)
	}
}

// etcdInUse is etcd's database size in use, from its /metrics.
func (b *bench) etcdInUse(ctx context.Context) (int64, error) {
	u := b.c.env.ControlPlane.Etcd.URL
	if u == nil {
		return 0, fmt.Errorf("no etcd URL")
	}
	readings, err := scrape(ctx, http.DefaultClient, u.String()+"/metrics", sample{name: "etcd_mvcc_db_total_size_in_use_in_bytes"})
	if err != nil || len(readings) == 0 || !readings[0].ok {
		return 0, fmt.Errorf("etcd_mvcc_db_total_size_in_use_in_bytes: %v", err)
	}
	return int64(readings[0].value), nil
}

// authzFootprint starts an authorizer (as the admin, on the server core) with
// the keys in place, and returns its heap after a GC and its RSS.
func (b *bench) authzFootprint(ctx context.Context) (heap, rss int64, err error) {
	httpAddr, _ := testenv.FreeAddr()
	pprofAddr, err := testenv.FreeAddr()
	if err != nil {
		return 0, 0, err
	}
	p, err := start(b.c.dir, "authz-memory", b.s.serverCPU, []string{"KUBECONFIG=" + b.c.env.Kubeconfig}, repoPath("bin", "latchkey"),
		"authz", "--grpc-bind-address=0", "--http-bind-address="+httpAddr, "--metrics-bind-address=0", "--pprof-bind-address="+pprofAddr,
		"--issuer-url="+b.c.issuer, "--jwks-namespace="+operatorNamespace)
	if err != nil {
		return 0, 0, err
	}
	defer p.stop()
	if _, err := p.waitReady(ctx, "http://"+httpAddr+"/readyz", 5*time.Minute); err != nil {
		return 0, 0, err
	}
	if err := sleep(ctx, settleTime); err != nil {
		return 0, 0, err
	}
	if heap, err = heapAfterGC(pprofGet(pprofAddr)); err != nil {
		return 0, 0, err
	}
	rss, err = p.rssBytes()
	return heap, rss, err
}

// objectSizes are one APIKey's and its Secret's sizes as the API server stores
// them: a custom resource as JSON, managedFields included; a Secret as protobuf.
type objectSizes struct {
	apiKeyJSON, apiKeyManagedFields int // the whole object; its managedFields alone
	secretJSON, secretProtobuf      int
	secretManagedFields             int
	managers                        []string // the field managers of the APIKey
}

// readObjectSizes reads the sizes of APIKey name in the benchmark's namespace.
func (b *bench) readObjectSizes(ctx context.Context, name string) (objectSizes, error) {
	var o objectSizes
	var key latchkeyv1.APIKey
	if err := b.c.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: name}, &key); err != nil {
		return o, err
	}
	o.apiKeyJSON = jsonSizeWithManagedFields(&key)
	o.apiKeyManagedFields = jsonSizeWithManagedFields(key.ManagedFields)
	for _, m := range key.ManagedFields {
		what := m.Manager
		if m.Subresource != "" {
			what += " (" + m.Subresource + ")"
		}
		o.managers = append(o.managers, what)
	}
	var secret corev1.Secret
	if err := b.c.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: key.SecretName()}, &secret); err != nil {
		return o, err
	}
	o.secretJSON = jsonSizeWithManagedFields(&secret)
	o.secretManagedFields = jsonSizeWithManagedFields(secret.ManagedFields)
	raw, err := b.c.apiserverGet(ctx, "/api/v1/namespaces/"+benchNamespace+"/secrets/"+secret.Name, "application/vnd.kubernetes.protobuf")
	if err != nil {
		return o, err
	}
	o.secretProtobuf = len(raw)
	return o, nil
}

// jsonSizeWithManagedFields is obj's size as JSON, as it is (managedFields included).
func jsonSizeWithManagedFields(obj any) int {
	data, _ := json.Marshal(obj)
	return len(data)
}

// perKey is what a process holds per APIKey at m above base, by heap key; 0 if unread.
func perKey(m, base memoryPoint, key string) float64 {
	if m.heap[key] <= 0 || base.heap[key] <= 0 || m.keys == 0 {
		return 0
	}
	return float64(m.heap[key]-base.heap[key]) / float64(m.keys)
}

// writeEnvelope is the memory table, the objects as stored, and the arithmetic
// of the envelope and of 1,000,000 credentials from this run's figures.
func (r *report) writeEnvelope(p func(string, ...any)) {
	p("### Memory and the scale envelope\n\n")
	p("What each process holds as steady state: the heap in use right after a forced GC (`/debug/pprof/heap?gc=1`, runtime.MemStats.HeapInuse; kube-apiserver's as its admin), ")
	p("read 5 s after the token server became ready; an authorizer is started for the reading, as the admin, and stopped after it. ")
	p("etcd: `etcd_mvcc_db_total_size_in_use_in_bytes`. RSS (VmRSS) beside it, which a process that collected a while ago overstates by garbage not yet collected and memory not yet returned. ")
	p("The baseline is each process's with no APIKey (the manager's: the process started again after the reconcile floor).")
	switch {
	case r.floor != nil && len(r.floorRounds) == 0:
		p(" kube-apiserver's and etcd's first count also holds what the reconcile floor's %d APIKeys and Secrets, created and deleted before it, left behind (events in the watch caches' windows, revisions etcd has not compacted yet): the envelope below is from the largest count.", r.floor.keys)
	case r.floor != nil:
		deleted := r.floor.keys
		for _, round := range r.floorRounds {
			deleted += round.floor.keys + round.reconcile.keys
		}
		p(" kube-apiserver's and etcd's first count also holds what the %d APIKeys and Secrets of the reconcile floors and of the rounds' reconciles before the last, created and deleted before it, left behind (events in the watch caches' windows, revisions etcd has not compacted yet): the envelope below is from the largest count.", deleted)
	}
	p("\n\n")
	p("| APIKeys | Token server | Authorizer | Manager | kube-apiserver | etcd in use | RSS: token server | manager | kube-apiserver |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, m := range r.memory {
		p("| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.keys, mib(m.heap["tokenServer"]), mib(m.heap["authz"]), mib(m.heap["manager"]),
			mib(m.heap["apiserver"]), mib(m.etcdInUse), mib(m.tokenServer), mib(m.manager), mib(m.apiserver))
	}
	p("\n")
	var last *memoryPoint
	for i := range r.memory {
		if m := r.memory[i]; m.objects != nil {
			o := m.objects
			p("One APIKey and its Secret as stored, at %d APIKeys: the APIKey (JSON, as etcd holds a custom resource) %d bytes, of which managedFields %d (managers: %s); ",
				m.keys, o.apiKeyJSON, o.apiKeyManagedFields, strings.Join(o.managers, ", "))
			p("the Secret %d bytes as protobuf (as etcd holds it; %d as JSON, of which managedFields %d).\n\n", o.secretProtobuf, o.secretJSON, o.secretManagedFields)
		}
		if r.memory[i].keys > 0 {
			last = &r.memory[i]
		}
	}
	if last == nil || len(r.memory) == 0 || r.memory[0].keys != 0 {
		return
	}
	base := r.memory[0]
	api, etcd := perKey(*last, base, "apiserver"), 0.0
	if last.etcdInUse > 0 && base.etcdInUse > 0 {
		etcd = float64(last.etcdInUse-base.etcdInUse) / float64(last.keys)
	}
	apiRSS := 0.0
	if last.apiserver > 0 && base.apiserver > 0 {
		apiRSS = float64(last.apiserver-base.apiserver) / float64(last.keys)
	}
	if api <= 0 {
		return
	}
	const gib = float64(1 << 30)
	p("#### The envelope, from the %d-key figures\n\n", last.keys)
	p("kube-apiserver holds %.0f bytes per APIKey after a GC (the APIKey and its Secret in its watch caches, with their decoded forms and indexes); ", api)
	p("with Go's default GOGC=100 its heap grows to about twice that between collections, so plan %.0f bytes per credential", 2*api)
	if apiRSS > 0 {
		p(" (its RSS grew by %.0f bytes per key in this run)", apiRSS)
	}
	p(". Per GiB of kube-apiserver memory set aside for Latchkey: about %.0f credentials (1 GiB ÷ %.0f bytes). ", gib/(2*api), 2*api)
	p("A cluster whose API server has 4 GiB to spare for them holds about %.0f; 16 GiB, about %.0f. ", 4*gib/(2*api), 16*gib/(2*api))
	if etcd > 0 {
		p("etcd holds %.0f bytes per credential in use: its default quota of 2 GiB (`--quota-backend-bytes`) fills at about %.0f credentials, and 8 GiB (etcd's largest advised) at %.0f, before any other object of the cluster. ",
			etcd, 2*gib/etcd, 8*gib/etcd)
	}
	tokenServer, manager, authz := perKey(*last, base, "tokenServer"), perKey(*last, base, "manager"), perKey(*last, base, "authz")
	p("Latchkey's own processes hold %.0f (token server), %.0f (authorizer) and %.0f (manager) bytes per credential: at 100,000 credentials %.0f, %.0f and %.0f MiB.\n\n",
		tokenServer, authz, manager, tokenServer*1e5/(1<<20), authz*1e5/(1<<20), manager*1e5/(1<<20))
	p("#### Design note: 1,000,000 credentials\n\n")
	p("At a million APIKeys, by this run's figures: kube-apiserver %.1f GiB after a GC (%.1f GiB between collections), etcd %.1f GiB in use, the token server %.2f GiB, the authorizer %.2f GiB, the manager %.2f GiB. ",
		api*1e6/gib, 2*api*1e6/gib, etcd*1e6/gib, tokenServer*1e6/gib, authz*1e6/gib, manager*1e6/gib)
	if etcd > 0 {
		p("What breaks first depends on how the control plane is sized. With etcd's default quota of 2 GiB, etcd: it fills at about %.0f credentials, and from then on writes fail cluster-wide, not only Latchkey's. ", 2*gib/etcd)
		if etcd*1e6 < 8*gib {
			p("With the quota raised to 8 GiB (etcd's largest advised), a million fit in etcd (%.1f GiB) and ", etcd*1e6/gib)
		} else {
			p("Even at 8 GiB (etcd's largest advised) a million do not fit (%.1f GiB), and ", etcd*1e6/gib)
		}
	}
	p("the API server's memory is the limit: it keeps every object of a watched resource decoded in its watch cache and serves every relist from there, %.0f GiB between collections at a million, where a 16 GiB API server holds about %.0f credentials. ",
		2*api*1e6/gib, 16*gib/(2*api))
	p("Then each restart of a token server or authorizer lists them all: the cold-start rows grow with the count.\n\n")
	p("What Latchkey would change, none of it built yet:\n\n")
	p("1. **Credentials without a Secret** for keys delivered once (`kubectl latchkey create` prints the plaintext, nothing stores it): the Secret is half of the objects and most of etcd's bytes per key; a rotation then needs the holder, as with any vendor's dashboard key.\n")
	p("2. **Many hashes per object**: an `APIKeySet` holding, say, 1,000 keys' hashes, scopes and expiries in one object amortizes the object's metadata and managedFields (hundreds of bytes each) and cuts the API server's per-object costs (watch events, cache entries, list items) a thousandfold; a key's revocation is then a patch of its set, and the set's size bounds a tenant's count.\n")
	p("3. **Watch a projection, not the objects**: the token server and the authorizer need only hashes, scopes, expiry and state; a condensed index object per namespace (written by the manager) would make their cold start a list of namespaces, not of credentials.\n")
	p("4. **Stream the initial list** (the API server's WatchList, `sendInitialEvents`) so that a restart does not hold a whole list in memory at once, on either side.\n\n")
	p("Built since the last design note: the manager holds each APIKey as a compact record, as it holds its Secrets (`controllers/apikeyrecord.go`, `controllers/secretcache.go`). ")
	p("A healthy issued APIKey's cache entry held 1,296 bytes of live heap typed (a 576-byte struct, a UID, hashes and key IDs as hex, times with a location each, the scopes and settings of every key repeated) and holds 353 as a record (`make bench-micro`, BenchmarkAPIKeyCacheEntry): ")
	p("UIDs, hashes and key IDs as bytes, times as Unix seconds, one shared copy of each shape of settings and of each condition text, and an issued key's Ready message and secretRef derived from its own fields. ")
	p("A record is kept only when it gives the object back exactly; a Get or List rebuilds the typed object from it. ")
	p("What the manager holds per key besides is the informers' maps and indexes (the APIKey's and the Secret's store entries, the namespace indexes, the scope index), the Secret's record, and the work queue's maps, which keep the size of the largest burst they held.\n\n")
}
