package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// The reconcile floor: the API writes the manager makes for N new APIKeys, made
// by a bare client, so that the reconcile time reads as a ratio to what the
// control plane alone needs for the same writes.
//
// The floor runs with the manager stopped, just before a reconcile measurement,
// and the manager starts again afterwards; in rounds, each a floor and a
// reconcile, whose ratios' median is the row's (floor, below). The alternatives
// are less honest: the manager acts on every namespace unless --namespaces, so a
// namespace it leaves alone needs a different install (config/namespaced) from
// the one measured; a paused manager (SIGSTOP) keeps its watches open and unread,
// which the API server ends as too slow, and relists into the floor's objects
// when it resumes. Stopped, it costs nothing during the floor and starts again on
// an API server that holds none of the floor's objects. Everything else is as
// during the reconcile: the same token server watching every namespace, the
// benchmark's own watch of the keys' namespace, every core at normal priority.
//
// The writes: N APIKey creates by the benchmark's client with the parallelism of
// the reconcile measurement (32, unthrottled, as there); and for each created key,
// with the manager's concurrency (--concurrency), identity (its kubeconfig: the same
// authorization, admission policy and API priority and fairness) and client-side
// limits (--kube-api-qps, --kube-api-burst), a Secret create and a status merge
// patch with the manager's optimistic lock, content and size. The end is the
// reconcile's: the benchmark's watch sees every key Ready. Left out are the
// manager's reads, served from its cache, and any Event it records: the ratio
// charges them to the manager.

const (
	floorNamespace    = "bench-floor"
	createWorkers     = 32 // the benchmark's APIKey creates, in the reconcile measurement as in the floor
	floorReadyTimeout = 30 * time.Minute
)

type floorRun struct {
	keys                    int
	created, written, total time.Duration // APIKey creates done; last status patch done; all seen Ready
	cleanup                 time.Duration
	apiserverRSS            int64 // kube-apiserver's, after the cleanup
	concurrency             int
	qps                     float64
	burst                   int
	cpu                     map[string]float64 // CPU seconds per process during the floor
	// Sizes, as JSON without managedFields, of one floor Secret and status, and of the
	// manager's (read after the reconcile): the floor writes what the manager writes.
	secretBytes, statusBytes               int
	managerSecretBytes, managerStatusBytes int
}

// managerWrites are the manager's settings that pace its writes.
type managerWrites struct {
	concurrency int
	qps         float64
	burst       int
	keyPrefix   string
}

func readManagerWrites(extraArgs []string) (managerWrites, error) {
	var w managerWrites
	values := map[string]string{}
	for _, name := range []string{"concurrency", "kube-api-qps", "kube-api-burst", "default-key-prefix"} {
		v, err := managerFlag(name, extraArgs)
		if err != nil {
			return w, err
		}
		values[name] = v
	}
	var errs [3]error
	w.concurrency, errs[0] = strconv.Atoi(values["concurrency"])
	w.qps, errs[1] = strconv.ParseFloat(values["kube-api-qps"], 64)
	w.burst, errs[2] = strconv.Atoi(values["kube-api-burst"])
	w.keyPrefix = values["default-key-prefix"]
	for _, err := range errs {
		if err != nil {
			return w, fmt.Errorf("reading the manager's flags: %w", err)
		}
	}
	return w, nil
}

// floor measures the reconcile floor for s.keys APIKeys (see the top of this
// file) s.floorRounds times, each but the last followed by a reconcile of as many
// keys in a namespace of its own, whose keys and Secrets are deleted after it; the
// last floor is followed by the reconcile step itself, whose keys the later steps
// use. This machine's speed drifts by tens of percent within minutes (the load
// rows measure together for that reason), and a floor and a reconcile are a
// minute apart: one pair read from 1.1× to 1.45× for the same build. The row is
// the median of the rounds' ratios, each round's reconcile over the floor
// measured right before it.
func (b *bench) floor(ctx context.Context) error {
	w, err := readManagerWrites(b.s.managerArgs)
	if err != nil {
		return err
	}
	writer, err := b.managerClient(w)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNamespace}}
	if err := b.c.client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	for round := 1; round < b.s.floorRounds; round++ {
		logf("  round %d of %d", round, b.s.floorRounds)
		f, err := b.floorOnce(ctx, writer, w)
		if err != nil {
			return err
		}
		rc, err := b.reconcileRound(ctx, round)
		if err != nil {
			return err
		}
		measured := floorRound{floor: f, reconcile: rc}
		logf("  reconcile ÷ the floor before it: %.2f× (%s ÷ %s)", measured.ratio(), rc.total.Round(time.Millisecond), f.total.Round(time.Millisecond))
		b.report.floorRounds = append(b.report.floorRounds, measured)
	}
	if b.s.floorRounds > 1 {
		logf("  round %d of %d (its reconcile is the next step's)", b.s.floorRounds, b.s.floorRounds)
	}
	b.report.floor, err = b.floorOnce(ctx, writer, w)
	return err
}

// floorOnce measures one floor: the manager stopped, the floor's writes, their
// objects deleted, the manager started again.
func (b *bench) floorOnce(ctx context.Context, writer client.Client, w managerWrites) (*floorRun, error) {
	logf("  stopping the manager: nothing but the floor's own writes act on the keys")
	b.c.manager.stop()
	run, err := b.floorWrites(ctx, writer, w)
	if err != nil {
		return nil, err
	}
	begin := time.Now()
	if err := b.floorCleanup(ctx, run.keys); err != nil {
		return nil, err
	}
	run.cleanup = time.Since(begin)
	logf("  %d APIKeys written and seen Ready in %s (creates done at %s, last status patch at %s); cleaned up in %s",
		run.keys, run.total.Round(time.Millisecond), run.created.Round(time.Millisecond), run.written.Round(time.Millisecond),
		run.cleanup.Round(time.Millisecond))
	logf("  starting the manager again")
	if err := b.c.startManager(ctx); err != nil {
		return nil, err
	}
	// A new process: its baseline memory is this one's, before any key.
	if err := b.managerBaseline(ctx); err != nil {
		return nil, err
	}
	if pid, ok := childPIDs()["kube-apiserver"]; ok {
		run.apiserverRSS, _ = procStatusKiB(pid, "VmRSS:") // what the floor left in it
	}
	return run, nil
}

// reconcileRound measures a reconcile of s.keys APIKeys in a namespace of the
// round's own, as the reconcile step does in the bench namespace, then stops the
// manager and deletes them as the floor's are deleted: Secrets first, so that the
// garbage collector finds no dependents when the APIKeys go. APIKeys first would
// leave it one Secret per key to look up and delete, at its client's 20 requests
// a second: minutes of API traffic under the next round's measurements. Stopped,
// the manager cannot issue a deleted Secret again either; the next floor starts
// with it stopped.
func (b *bench) reconcileRound(ctx context.Context, round int) (reconcileRun, error) {
	name := fmt.Sprintf("bench-round-%d", round)
	if err := b.c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil && !apierrors.IsAlreadyExists(err) {
		return reconcileRun{}, err
	}
	rc, err := b.createKeysIn(ctx, name, 0, b.s.keys)
	if err != nil {
		return rc, err
	}
	b.c.manager.stop()
	begin := time.Now()
	if err := b.deleteKeys(ctx, name, b.s.keys); err != nil {
		return rc, err
	}
	logf("  %d APIKeys Ready with Secrets in %s (created in %s); deleted in %s", rc.keys, rc.total.Round(time.Millisecond),
		rc.created.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	return rc, nil
}

// managerClient is a bare client with the manager's identity and client-side limits.
func (b *bench) managerClient(w managerWrites) (client.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(b.c.dir, "latchkey-manager.kubeconfig"))
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(w.qps), w.burst
	return client.New(cfg, client.Options{Scheme: b.c.client.Scheme()})
}

// floorWrites makes the writes and waits until the watch sees every key Ready.
func (b *bench) floorWrites(ctx context.Context, writer client.Client, w managerWrites) (*floorRun, error) {
	run := &floorRun{keys: b.s.keys, concurrency: w.concurrency, qps: w.qps, burst: w.burst}
	rawKey, err := issuanceproof.NewKey(rand.Reader)
	if err != nil {
		return run, err
	}
	proofKey, err := issuanceproof.ParseKey(rawKey) // the benchmark's own: a proof of the manager's size
	if err != nil {
		return run, err
	}
	keys := make([]*latchkeyv1.APIKey, b.s.keys)
	for i := range keys {
		keys[i] = apiKeyObject(floorNamespace, i)
	}
	if err := b.confine(allCPUs(), "0"); err != nil {
		return run, err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := b.c.watchReady(watchCtx, floorNamespace, &latchkeyv1.APIKey{})
	if err != nil {
		return run, err
	}
	pids := childPIDs()
	cpuBefore := processCPU(pids, nil, b.server)
	// Beside kube-apiserver-reconcile-N.pprof: what the API server does for the
	// same writes without the manager.
	apiserverProfile := b.apiserverProfile(ctx, fmt.Sprintf("kube-apiserver-floor-%d.pprof", len(keys)), 30*time.Second)
	defer apiserverProfile()

	var sizes sync.Once // all alike; one is enough
	begin := time.Now()
	created := make(chan *latchkeyv1.APIKey, len(keys))
	issued := make(chan error, 1)
	go func() {
		// The manager's workers: each takes a created key and writes what the manager would.
		issued <- parallel(ctx, len(keys), w.concurrency, func(int) error {
			key, ok := <-created
			if !ok {
				return fmt.Errorf("fewer keys created than expected")
			}
			size, err := b.floorIssue(ctx, writer, proofKey, w.keyPrefix, key)
			if err == nil {
				sizes.Do(func() { run.secretBytes, run.statusBytes = size[0], size[1] })
			}
			return err
		})
	}()
	err = parallel(ctx, len(keys), createWorkers, func(i int) error {
		if err := b.c.client.Create(ctx, keys[i]); err != nil {
			return fmt.Errorf("creating %s: %w", keys[i].Name, err)
		}
		created <- keys[i]
		return nil
	})
	run.created = time.Since(begin)
	close(created)
	if ierr := <-issued; err == nil {
		err = ierr
	}
	if err != nil {
		return run, err
	}
	run.written = time.Since(begin)
	if err := watch.waitCount(ctx, len(keys), floorReadyTimeout); err != nil {
		return run, err
	}
	run.total = time.Since(begin)
	run.cpu = difference(processCPU(pids, nil, b.server), cpuBefore)
	return run, nil
}

// floorIssue writes key's Secret and status as the manager does for a new APIKey
// (controllers: issue, desiredSecret, accept, setReadyIssued, setScopesKnown) and
// returns their sizes.
func (b *bench) floorIssue(ctx context.Context, writer client.Client, proofKey *issuanceproof.Key, prefix string, key *latchkeyv1.APIKey) ([2]int, error) {
	kind := controllers.APIKeyKind{}
	plaintext, err := credential.NewAPIKey(rand.Reader, prefix, string(key.Spec.Environment))
	if err != nil {
		return [2]int{}, err
	}
	hash := credential.Hash(plaintext)
	const serial = 1
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.SecretName(),
			Labels: map[string]string{controllers.ManagedByLabel: controllers.ManagedByValue},
			Annotations: map[string]string{
				latchkeyv1.SerialAnnotation: strconv.Itoa(serial),
				latchkeyv1.IssuanceProofAnnotation: proofKey.Proof(issuanceproof.Claim{Kind: kind.Name(),
					Namespace: key.Namespace, Name: key.Name, UID: key.UID, Serial: serial, Hash: hash}),
			}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{kind.SecretKey(): []byte(plaintext)},
	}
	if err := controllerutil.SetControllerReference(key, secret, writer.Scheme()); err != nil {
		return [2]int{}, err
	}
	if err := writer.Create(ctx, secret); err != nil {
		return [2]int{}, fmt.Errorf("creating Secret %s: %w", secret.Name, err)
	}

	before := key.DeepCopy()
	status := key.CredentialStatus()
	status.SecretRef = &latchkeyv1.SecretReference{Name: key.SecretName()}
	status.ExpiresAt = key.Spec.ExpiresAt
	status.Credentials = []latchkeyv1.CredentialHash{{Hash: hash, Serial: serial, IssuedAt: metav1.NewTime(time.Now().Truncate(time.Second))}}
	status.Serial = serial
	status.LastRotateRequest = key.Annotations[latchkeyv1.RotateAnnotation]
	kind.Issued(key, hash)
	apimeta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: latchkeyv1.ConditionReady, Status: metav1.ConditionTrue, Reason: latchkeyv1.ReasonIssued,
		Message:            fmt.Sprintf("%s %s is in Secret %s", kind.Name(), credential.KeyID(hash), key.SecretName()),
		ObservedGeneration: key.Generation,
	})
	// The manager sets ScopesKnown in the same write. No API exists yet in the
	// floor's namespace, nor in the reconcile's when it runs (the authorizer's
	// measurement creates the first): the manager writes NoCatalogue in both.
	apimeta.SetStatusCondition(&status.Conditions, controllers.ScopesKnownCondition(false, nil, key.Generation))
	status.ObservedGeneration = key.Generation
	patch := client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})
	if err := writer.Status().Patch(ctx, key, patch); err != nil {
		return [2]int{}, fmt.Errorf("patching the status of %s: %w", key.Name, err)
	}
	return [2]int{jsonSize(secret), jsonSize(key.Status)}, nil
}

// jsonSize is the size of obj as JSON, without managedFields (whose size depends on
// the writer's name, not on what it writes).
func jsonSize(obj any) int {
	if o, ok := obj.(client.Object); ok {
		o = o.DeepCopyObject().(client.Object)
		o.SetManagedFields(nil)
		obj = o
	}
	data, _ := json.Marshal(obj)
	return len(data)
}

// floorCleanup deletes the floor's objects (deleteKeys), so that the manager,
// started again, finds none and later rows see none.
func (b *bench) floorCleanup(ctx context.Context, keys int) error {
	return b.deleteKeys(ctx, floorNamespace, keys)
}

// deleteKeys deletes the Secrets of APIKeys 0..keys-1 of namespace, then the
// APIKeys, with the manager stopped, and checks that none of either is left.
// Secrets first: the garbage collector then finds no dependents to delete when
// the APIKeys go, and has no work left over for the next measurement. One delete
// per object on createWorkers connections: a deletecollection deletes one object
// at a time inside the API server (--delete-collection-workers=1), several times
// slower.
func (b *bench) deleteKeys(ctx context.Context, namespace string, keys int) error {
	for _, obj := range []func(i int) client.Object{
		func(i int) client.Object {
			return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: apiKeyObject(namespace, i).SecretName()}}
		},
		func(i int) client.Object { return apiKeyObject(namespace, i) },
	} {
		err := parallel(ctx, keys, createWorkers, func(i int) error {
			return client.IgnoreNotFound(b.c.client.Delete(ctx, obj(i)))
		})
		if err != nil {
			return fmt.Errorf("deleting the APIKeys and Secrets of %s: %w", namespace, err)
		}
	}
	left, err := b.c.count(ctx, namespace, latchkeyv1.GroupVersion.WithKind("APIKeyList"))
	if err != nil {
		return err
	}
	secrets, err := b.c.count(ctx, namespace, corev1.SchemeGroupVersion.WithKind("SecretList"))
	if err != nil {
		return err
	}
	if left+secrets > 0 {
		return fmt.Errorf("%d APIKeys and %d Secrets of %s left after deleting them all", left, secrets, namespace)
	}
	return nil
}

// floorSizesOfManager records the size of what the manager wrote for one key, to set beside the floor's.
func (b *bench) floorSizesOfManager(ctx context.Context) error {
	if b.report.floor == nil {
		return nil
	}
	var key latchkeyv1.APIKey
	if err := b.c.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: keyName(0)}, &key); err != nil {
		return err
	}
	var secret corev1.Secret
	if err := b.c.client.Get(ctx, client.ObjectKey{Namespace: benchNamespace, Name: key.SecretName()}, &secret); err != nil {
		return err
	}
	b.report.floor.managerSecretBytes, b.report.floor.managerStatusBytes = jsonSize(&secret), jsonSize(key.Status)
	return nil
}
