//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/controllers"
	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/issuanceproof"
)

// The fault specs: the manager SIGKILLed at random points while it issues and
// rotates hundreds of credentials, and a leader SIGKILLed with a standby waiting.
// They watch the API server themselves, as the admin, and judge the manager by
// everything they saw, not only by where it ends up.

// faultLabel marks the fault specs' objects and, through spec.secretTemplate,
// their Secrets, so that the specs' watches see exactly those.
const faultLabel = "e2e.latchkey.dev/faults"

const (
	crashObjects     = 500
	crashKills       = 30
	crashMinAlive    = 500 * time.Millisecond
	crashMaxAlive    = 3 * time.Second
	rotationWaveSize = 80
	// rotationWaveEvery paces the rotation requests: a steady stream for the
	// kills to land in, not a flood that the restarts never catch up with.
	rotationWaveEvery = 2 * time.Second
)

// crashNamespaces hold the crash spec's credentials: a few, as tenants would.
var crashNamespaces = []string{"faults-a", "faults-b", "faults-c", "faults-d"}

// crashGracePeriods: short ones end (and are pruned) while the manager is being
// killed, so pruning races the kills; with 1h (explicit or the default) every
// drop during the spec would be early.
var crashGracePeriods = []*metav1.Duration{{Duration: 3 * time.Second}, {Duration: 10 * time.Second}, {Duration: time.Hour}, nil}

var _ = Describe("Faults", Label("faults"), func() {
	It("keeps every credential sound while the manager is SIGKILLed at random points", func(ctx SpecContext) {
		c := adminClient()
		seed := faultSeed()
		By(fmt.Sprintf("fault schedule seed %d (E2E_FAULT_SEED=%d replays the same kill times and rotation picks)", seed, seed))
		AddReportEntry("fault schedule seed", seed)
		killRand := rand.New(rand.NewPCG(seed, 1))
		rotateRand := rand.New(rand.NewPCG(seed, 2))

		for _, ns := range crashNamespaces {
			createNamespace(ctx, c, ns)
		}
		// Registered first, so it runs last: after a manager is back.
		DeferCleanup(func() {
			By("deleting the spec's credentials")
			deleteFaultObjects(context.Background(), c, crashNamespaces)
		})
		rec := newFaultRecorder()
		watchCtx, stopWatching := context.WithCancel(context.Background())
		DeferCleanup(stopWatching)
		rec.follow(watchCtx, c, &latchkeyv1.APIKeyList{})
		rec.follow(watchCtx, c, &latchkeyv1.OAuthClientList{})
		rec.follow(watchCtx, c, &corev1.SecretList{})

		By("replacing the suite's manager with ones that are SIGKILLed every 0.5-3s")
		manager.stop() // SIGTERM: it gives up the Lease, so the manager restored afterwards starts at once
		manager = nil
		killCtx, stopKilling := context.WithCancel(context.Background())
		killsDone := make(chan []error, 1)
		DeferCleanup(func() {
			stopKilling()
			<-killsDone
			if manager == nil {
				manager = startManager()
			}
		})
		// Without --leader-elect: each manager is dead (waited for) before the next
		// starts, so two never overlap, and a restart need not wait out the Lease of
		// the one killed before it; the kills then land while managers work. No
		// probes ("0"): nothing waits for these to be ready, and no port can clash.
		go func() {
			defer GinkgoRecover()
			var errs []error
			defer func() { killsDone <- errs }()
			for i := 1; i <= crashKills; i++ {
				p := startManagerProcess("0")
				alive := crashMinAlive + time.Duration(killRand.Int64N(int64(crashMaxAlive-crashMinAlive)))
				// A timer, not a wait for a condition: this is the fault schedule.
				timer := time.NewTimer(alive)
				select {
				case <-p.Exited():
					timer.Stop()
					errs = append(errs, fmt.Errorf("manager %d/%d exited by itself after less than %s: %v", i, crashKills, alive, p.Err()))
					continue
				case <-killCtx.Done():
					timer.Stop()
					p.kill()
					return
				case <-timer.C:
				}
				p.kill()
				rec.killed(time.Now())
				fmt.Fprintf(GinkgoWriter, "kill %d/%d: manager pid %d SIGKILLed after %s\n", i, crashKills, p.Cmd.Process.Pid, alive)
			}
		}()

		By(fmt.Sprintf("creating %d APIKeys and OAuthClients across %d namespaces", crashObjects, len(crashNamespaces)))
		objects := make([]crclient.Object, crashObjects)
		for i := range objects {
			objects[i] = crashObject(i)
		}
		Expect(parallel(8, len(objects), func(i int) error { return c.Create(ctx, objects[i]) })).To(Succeed())

		By("requesting rotations in waves until the last kill")
		var kills []error
		waves := 0
		ticker := time.NewTicker(rotationWaveEvery)
	rotating:
		for {
			select {
			case kills = <-killsDone:
				killsDone <- kills // for the cleanup
				break rotating
			case <-ticker.C:
			}
			waves++
			value := "wave-" + strconv.Itoa(waves)
			picks := rotateRand.Perm(len(objects))[:rotationWaveSize]
			Expect(parallel(8, len(picks), func(i int) error {
				rec.requesting(keyOf(objects[picks[i]].(credentialObject)), value)
				patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, latchkeyv1.RotateAnnotation, value)
				return c.Patch(ctx, objects[picks[i]], crclient.RawPatch(types.MergePatchType, []byte(patch)))
			})).To(Succeed())
		}
		ticker.Stop()
		Expect(kills).To(BeEmpty(), "no manager ends by itself")
		AddReportEntry("rotation waves", fmt.Sprintf("%d waves of %d rotation requests", waves, rotationWaveSize))

		By("leaving one manager running: the suite's")
		manager = startManager()

		By("every APIKey and OAuthClient becomes Ready with its last rotation request handled")
		var objs []credentialObject
		settled := func(g Gomega) {
			// Fresh lists each time: decoding into a used one can keep stale fields.
			var keys latchkeyv1.APIKeyList
			var clients latchkeyv1.OAuthClientList
			g.Expect(c.List(ctx, &keys, crclient.HasLabels{faultLabel})).To(Succeed())
			g.Expect(c.List(ctx, &clients, crclient.HasLabels{faultLabel})).To(Succeed())
			objs = credentialObjects(&keys, &clients)
			g.Expect(objs).To(HaveLen(crashObjects))
			var pending []string
			for _, obj := range objs {
				status := obj.CredentialStatus()
				ready := meta.IsStatusConditionTrue(status.Conditions, latchkeyv1.ConditionReady)
				if !ready || status.ObservedGeneration != obj.GetGeneration() ||
					status.LastRotateRequest != obj.GetAnnotations()[latchkeyv1.RotateAnnotation] {
					pending = append(pending, keyOf(obj).String())
				}
			}
			g.Expect(pending).To(BeEmpty(), "not Ready, or a rotation request not yet handled")
		}
		settledAt := time.Now()
		Eventually(ctx, settled).WithTimeout(2 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
		AddReportEntry("settled after the last kill", time.Since(settledAt).String())

		var secrets corev1.SecretList
		Expect(c.List(ctx, &secrets, crclient.HasLabels{faultLabel})).To(Succeed())
		By("the watches have seen every object and Secret as listed")
		Eventually(ctx, func() []string { return rec.unseen(objs, secrets.Items) }).Should(BeEmpty())
		stopWatching()
		Expect(rec.watchErrors()).To(BeEmpty(), "the watches saw every change: no gap, no error")

		proofKey := issuanceKey(ctx, c)
		secretsByName := map[types.NamespacedName]*corev1.Secret{}
		for i := range secrets.Items {
			secretsByName[crclient.ObjectKeyFromObject(&secrets.Items[i])] = &secrets.Items[i]
		}
		By("every Secret holds the credential its object's status accepts as current, with a valid issuance proof")
		var wrong []string
		for _, obj := range objs {
			if problem := checkSecret(obj, secretsByName[types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.SecretName()}], proofKey); problem != "" {
				wrong = append(wrong, keyOf(obj).String()+": "+problem)
			}
		}
		Expect(wrong).To(BeEmpty())

		report := rec.analyse()
		AddReportEntry("observed", report.summary())
		By("every rotation request recorded as handled was answered by a credential issued under it")
		Expect(report.staleRotations).To(BeEmpty(), "first few: %v", report.staleRotations[:min(len(report.staleRotations), 20)])
		By("no serial was issued twice: one object and serial, one credential, in every Secret and status seen")
		Expect(report.badSecrets).To(BeEmpty(), "every Secret version held a credential and a serial")
		Expect(report.serialReused).To(BeEmpty())
		By("status accepted only credentials that a Secret held under the same serial, and its serial never went back")
		Expect(report.neverInSecret).To(BeEmpty())
		Expect(report.serialWentBack).To(BeEmpty())
		By("every credential written to a Secret was accepted by status: adopted after a crash, never lost")
		Expect(report.neverAccepted).To(BeEmpty())
		By("no accepted credential left status before its grace period ended, nor came back after")
		Expect(report.droppedEarly).To(BeEmpty())
		Expect(report.reaccepted).To(BeEmpty())
		Expect(report.gracePrunes).To(BeNumerically(">", 0), "grace periods ended during the spec: the check had something to judge")

		By("no credential reached the manager's or the token server's log")
		Expect(credentialsInLogs(rec.credentialHashes(), "manager", "tokenserver")).To(BeEmpty())
	}, SpecTimeout(5*time.Minute))

	It("hands over to the standby manager within the lease duration when the leader is SIGKILLed", func(ctx SpecContext) {
		c := adminClient()
		const ns = "faults-failover"
		const lease = 5 * time.Second
		// Short, so that the spec is quick. The leader tries to renew every half
		// second and gives up only after 4s without success, so that a slow API
		// server on a busy machine does not end its leadership before the kill does.
		leaseFlags := []string{"--leader-elect", "--leader-elect-lease-duration=" + lease.String(),
			"--leader-elect-renew-deadline=4s", "--leader-elect-retry-period=500ms"}
		createNamespace(ctx, c, ns)
		DeferCleanup(func() { deleteFaultObjects(context.Background(), c, []string{ns}) })

		By("replacing the suite's manager with two leader-electing replicas")
		holderBefore := leaseHolder(ctx, c)
		manager.stop() // SIGTERM: it gives up the Lease
		manager = nil
		var replicas []*process
		DeferCleanup(func() {
			for _, p := range replicas {
				p.kill() // SIGKILL: a survivor keeps the Lease, which startManager then waits out
			}
			if manager == nil {
				manager = startManager()
			}
		})
		first := startManagerProcess("0", leaseFlags...)
		replicas = append(replicas, first)
		Eventually(ctx, func() string { return leaseHolder(ctx, c) }).ShouldNot(BeElementOf("", holderBefore), "the first replica takes the Lease")
		leader := leaseHolder(ctx, c)
		standbyProbe := freeAddr()
		standby := startManagerProcess(standbyProbe, leaseFlags...)
		replicas = append(replicas, standby)
		Eventually(ctx, func() int { return httpStatus("http://" + standbyProbe + "/readyz") }).Should(Equal(http.StatusOK), "the standby runs")
		createAPIKeys(ctx, c, ns, "before-failover", 1)
		Eventually(ctx, func() []string { return notReady(ctx, c, ns, "before-failover", 1) }).Should(BeEmpty(), "the leader issues")
		Expect(leaseHolder(ctx, c)).To(Equal(leader), "the first replica still leads")

		By("SIGKILLing the leader: it cannot give up the Lease")
		killedAt := time.Now()
		first.kill()
		replicas = []*process{standby}
		createAPIKeys(ctx, c, ns, "after-failover", 5)
		deadline := killedAt.Add(lease + 5*time.Second)
		Eventually(ctx, func() []string { return notReady(ctx, c, ns, "after-failover", 5) }).
			WithTimeout(time.Until(deadline)).WithPolling(50*time.Millisecond).
			Should(BeEmpty(), "new APIKeys Ready within the lease duration plus 5s of the kill")
		AddReportEntry("new APIKeys Ready after the leader's SIGKILL", time.Since(killedAt).String())
		Expect(leaseHolder(ctx, c)).NotTo(BeElementOf("", leader), "the standby holds the Lease")

		By("restoring the suite's manager")
		standby.stop() // SIGTERM: it gives up the Lease, so the suite's manager starts at once
		replicas = nil
		manager = startManager()
	}, SpecTimeout(2*time.Minute))
})

// faultSeed is E2E_FAULT_SEED if set, else Ginkgo's seed for this run (which
// --ginkgo.seed also sets), so that a failing schedule can be replayed.
func faultSeed() uint64 {
	if v := os.Getenv("E2E_FAULT_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		Expect(err).NotTo(HaveOccurred(), "E2E_FAULT_SEED")
		return seed
	}
	return uint64(GinkgoRandomSeed())
}

// adminClient talks to the control plane as the admin user, unthrottled: the
// spec creates hundreds of objects while a manager is killed over and over.
func adminClient() crclient.WithWatch {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(workDir, "admin.kubeconfig"))
	Expect(err).NotTo(HaveOccurred())
	cfg.QPS = -1
	ctrllog.SetLogger(GinkgoLogr) // the client's rare warnings, in the spec's output
	scheme := runtime.NewScheme()
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(latchkeyv1.AddToScheme(scheme)).To(Succeed())
	c, err := crclient.NewWithWatch(cfg, crclient.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func createNamespace(ctx context.Context, c crclient.Client, name string) {
	err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if !apierrors.IsAlreadyExists(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// deleteFaultObjects deletes the specs' credentials (their Secrets go with them,
// through the garbage collector) and waits until they are gone. The namespaces
// stay: the control plane runs no namespace controller to finish deleting them.
func deleteFaultObjects(ctx context.Context, c crclient.Client, namespaces []string) {
	for _, ns := range namespaces {
		Expect(c.DeleteAllOf(ctx, &latchkeyv1.APIKey{}, crclient.InNamespace(ns))).To(Succeed())
		Expect(c.DeleteAllOf(ctx, &latchkeyv1.OAuthClient{}, crclient.InNamespace(ns))).To(Succeed())
	}
	Eventually(ctx, func(g Gomega) {
		var keys latchkeyv1.APIKeyList
		var clients latchkeyv1.OAuthClientList
		g.Expect(c.List(ctx, &keys, crclient.HasLabels{faultLabel})).To(Succeed())
		g.Expect(c.List(ctx, &clients, crclient.HasLabels{faultLabel})).To(Succeed())
		g.Expect(keys.Items).To(BeEmpty())
		g.Expect(clients.Items).To(BeEmpty())
	}).Should(Succeed())
}

// crashObject is the i-th credential of the crash spec: 3 APIKeys to 2
// OAuthClients, spread over the namespaces and the grace periods.
func crashObject(i int) crclient.Object {
	ns := crashNamespaces[i%len(crashNamespaces)]
	spec := latchkeyv1.CredentialSpec{SecretTemplate: &latchkeyv1.SecretTemplate{Labels: map[string]string{faultLabel: "crash"}}}
	if grace := crashGracePeriods[(i/len(crashNamespaces))%len(crashGracePeriods)]; grace != nil {
		spec.Rotation = &latchkeyv1.RotationPolicy{GracePeriod: grace}
	}
	om := metav1.ObjectMeta{Namespace: ns, Labels: map[string]string{faultLabel: "crash"}}
	if i%5 < 3 {
		om.Name = fmt.Sprintf("key-%03d", i)
		return &latchkeyv1.APIKey{ObjectMeta: om, Spec: latchkeyv1.APIKeySpec{Scopes: []string{"orders:read"}, CredentialSpec: spec}}
	}
	om.Name = fmt.Sprintf("client-%03d", i)
	return &latchkeyv1.OAuthClient{ObjectMeta: om, Spec: latchkeyv1.OAuthClientSpec{
		Audiences: []string{"https://orders.e2e.test"}, CredentialSpec: spec}}
}

func createAPIKeys(ctx context.Context, c crclient.Client, ns, prefix string, n int) {
	for i := range n {
		Expect(c.Create(ctx, &latchkeyv1.APIKey{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%d", prefix, i), Labels: map[string]string{faultLabel: "failover"}},
			Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"orders:read"}},
		})).To(Succeed())
	}
}

// notReady names those of the n APIKeys prefix-0… that are not Ready with their key in their Secret.
func notReady(ctx context.Context, c crclient.Client, ns, prefix string, n int) []string {
	var pending []string
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		key := &latchkeyv1.APIKey{}
		if err := c.Get(ctx, crclient.ObjectKey{Namespace: ns, Name: name}, key); err != nil {
			pending = append(pending, name+": "+err.Error())
			continue
		}
		secret := &corev1.Secret{}
		if !meta.IsStatusConditionTrue(key.Status.Conditions, latchkeyv1.ConditionReady) || len(key.Status.Credentials) == 0 ||
			c.Get(ctx, crclient.ObjectKey{Namespace: ns, Name: key.SecretName()}, secret) != nil ||
			credential.Hash(string(secret.Data[latchkeyv1.APIKeySecretKey])) != key.Status.Credentials[0].Hash {
			pending = append(pending, name)
		}
	}
	return pending
}

// leaseHolder is the identity holding the manager's leader-election Lease ("" for none).
func leaseHolder(ctx context.Context, c crclient.Client) string {
	lease := &coordinationv1.Lease{}
	err := c.Get(ctx, crclient.ObjectKey{Namespace: "latchkey-system", Name: "manager.latchkey.dev"}, lease)
	if apierrors.IsNotFound(err) {
		return ""
	}
	Expect(err).NotTo(HaveOccurred())
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// parallel runs fn(0..n-1) on workers goroutines and returns every error.
func parallel(workers, n int, fn func(i int) error) error {
	var mu sync.Mutex
	var errs []error
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// issuanceKey reads the manager's issuance key, to check the proofs on the Secrets.
func issuanceKey(ctx context.Context, c crclient.Client) *issuanceproof.Key {
	secret := &corev1.Secret{}
	Expect(c.Get(ctx, crclient.ObjectKey{Namespace: "latchkey-system", Name: "latchkey-issuance-key"}, secret)).To(Succeed())
	key, err := issuanceproof.ParseKey(secret.Data[controllers.IssuanceKeyDataKey])
	Expect(err).NotTo(HaveOccurred())
	return key
}

// credentialObject is an APIKey or an OAuthClient.
type credentialObject interface {
	crclient.Object
	CredentialStatus() *latchkeyv1.CredentialStatus
	Lifecycle() *latchkeyv1.CredentialSpec
	SecretName() string
}

func credentialObjects(keys *latchkeyv1.APIKeyList, clients *latchkeyv1.OAuthClientList) []credentialObject {
	var objs []credentialObject
	for i := range keys.Items {
		objs = append(objs, &keys.Items[i])
	}
	for i := range clients.Items {
		objs = append(objs, &clients.Items[i])
	}
	return objs
}

// objectKey names an APIKey or OAuthClient.
type objectKey struct{ Kind, Namespace, Name string }

func (k objectKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

func keyOf(obj credentialObject) objectKey {
	if _, ok := obj.(*latchkeyv1.OAuthClient); ok {
		return objectKey{"OAuthClient", obj.GetNamespace(), obj.GetName()}
	}
	return objectKey{"APIKey", obj.GetNamespace(), obj.GetName()}
}

// secretKeyOf is the data key of the credential in a kind's Secret.
func secretKeyOf(kind string) string {
	if kind == "OAuthClient" {
		return latchkeyv1.ClientSecretSecretKey
	}
	return latchkeyv1.APIKeySecretKey
}

// checkSecret says what is wrong with obj's Secret, "" if nothing: it must be
// controlled by obj and hold, under status's serial and with a valid issuance
// proof, the credential status accepts as current (an OAuthClient's also its client_id).
func checkSecret(obj credentialObject, secret *corev1.Secret, key *issuanceproof.Key) string {
	status := obj.CredentialStatus()
	switch {
	case secret == nil:
		return "no Secret " + obj.SecretName()
	case !metav1.IsControlledBy(secret, obj):
		return "Secret not controlled by it"
	case len(status.Credentials) == 0:
		return "status accepts no credential"
	}
	k := keyOf(obj)
	hash := credential.Hash(string(secret.Data[secretKeyOf(k.Kind)]))
	current := status.Credentials[0]
	serial := secret.Annotations[latchkeyv1.SerialAnnotation]
	if !slices.ContainsFunc(status.Credentials, func(c latchkeyv1.CredentialHash) bool { return c.Hash == hash }) {
		return fmt.Sprintf("the Secret's credential %s is not accepted by status (current %s)", credential.KeyID(hash), credential.KeyID(current.Hash))
	}
	if hash != current.Hash || serial != strconv.FormatInt(current.Serial, 10) || current.Serial != status.Serial {
		return fmt.Sprintf("the Secret holds %s serial %s, status has %s serial %d as current and serial %d as newest",
			credential.KeyID(hash), serial, credential.KeyID(current.Hash), current.Serial, status.Serial)
	}
	kindName := controllers.APIKeyKind{}.Name()
	if c, ok := obj.(*latchkeyv1.OAuthClient); ok {
		kindName = controllers.OAuthClientKind{}.Name()
		if got := string(secret.Data[latchkeyv1.ClientIDSecretKey]); got != c.Status.ClientID || got != key.ClientID(c.UID) {
			return fmt.Sprintf("client_id %q in the Secret, %q in status, %q derived", got, c.Status.ClientID, key.ClientID(c.UID))
		}
	}
	claim := issuanceproof.Claim{Kind: kindName, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), Serial: current.Serial, Hash: hash}
	if !key.Verify(claim, secret.Annotations[latchkeyv1.IssuanceProofAnnotation]) {
		return "the issuance proof does not verify"
	}
	return ""
}

// credentialPattern finds strings shaped like one of the spec's credentials: an
// API key with the default prefix, or a client secret.
var credentialPattern = regexp.MustCompile(`lk_(?:live|test)_[0-9A-Za-z]{49}|[0-9a-f]{64}`)

// credentialsInLogs returns the key IDs of the credentials in hashes whose
// plaintext appears in one of the processes' logs. It hashes every
// credential-shaped string there: a status hash in a log is 64 hex digits too,
// but its own hash is no credential's.
func credentialsInLogs(hashes map[string]bool, names ...string) []string {
	var leaked []string
	for _, name := range names {
		logs, err := os.ReadFile(filepath.Join(workDir, name+".log"))
		Expect(err).NotTo(HaveOccurred())
		for _, candidate := range credentialPattern.FindAll(logs, -1) {
			if hash := credential.Hash(string(candidate)); hashes[hash] {
				leaked = append(leaked, name+": "+credential.KeyID(hash))
			}
		}
	}
	return leaked
}

// statusSeen is one status of an object, as a watch delivered it.
type statusSeen struct {
	at     time.Time // when the watch delivered it: after the write
	status latchkeyv1.CredentialStatus
	grace  time.Duration
}

// secretSeen is one version of a credential Secret, as a watch delivered it: the
// hash of its credential, never the credential.
type secretSeen struct {
	at     time.Time
	owner  objectKey
	serial string
	hash   string
}

// faultRecorder keeps everything the crash spec's watches deliver.
type faultRecorder struct {
	mu       sync.Mutex
	statuses map[objectKey][]statusSeen
	secrets  []secretSeen
	seen     map[string]bool // "<kind>/<namespace>/<name>@<resourceVersion>"
	errs     []error
	// kills are when managers were SIGKILLed; requested is when each rotation
	// request was sent, by object and annotation value.
	kills     []time.Time
	requested map[objectKey]map[string]time.Time
}

func newFaultRecorder() *faultRecorder {
	return &faultRecorder{statuses: map[objectKey][]statusSeen{}, seen: map[string]bool{}, requested: map[objectKey]map[string]time.Time{}}
}

// killed notes that a manager was SIGKILLed at t.
func (r *faultRecorder) killed(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kills = append(r.kills, t)
}

// requesting notes that a rotation request value for obj is about to be sent.
func (r *faultRecorder) requesting(obj objectKey, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requested[obj] == nil {
		r.requested[obj] = map[string]time.Time{}
	}
	r.requested[obj][value] = time.Now()
}

// follow lists and then watches list's kind (only the objects with faultLabel),
// resuming from the last resourceVersion whenever the API server ends a watch, so
// that it sees every change. A change it cannot see (410 Gone) is recorded as an
// error, which fails the spec: the checks need the whole history.
func (r *faultRecorder) follow(ctx context.Context, c crclient.WithWatch, list crclient.ObjectList) {
	Expect(c.List(ctx, list, crclient.HasLabels{faultLabel})).To(Succeed())
	Expect(meta.LenList(list)).To(BeZero(), "the spec starts from no objects of its own")
	rv := list.GetResourceVersion()
	go func() {
		defer GinkgoRecover()
		failures := 0
		for ctx.Err() == nil {
			w, err := c.Watch(ctx, list, crclient.HasLabels{faultLabel},
				&crclient.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if failures++; failures > 10 || apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
					r.fail(fmt.Errorf("watching %T from resourceVersion %s: %w", list, rv, err))
					return
				}
				continue
			}
			failures = 0
			for event := range w.ResultChan() {
				if event.Type == watch.Error {
					// As a Reflector does: only an expired resourceVersion is a gap in
					// the history; any other error (the stream cut, client side or
					// server side) ends this watch, and the next resumes from rv.
					err := apierrors.FromObject(event.Object)
					w.Stop()
					if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
						r.fail(fmt.Errorf("watching %T: %w", list, err))
						return
					}
					break
				}
				obj := event.Object.(crclient.Object)
				rv = obj.GetResourceVersion()
				if event.Type != watch.Bookmark {
					r.record(obj, time.Now())
				}
			}
		}
	}()
}

func (r *faultRecorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *faultRecorder) watchErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

func (r *faultRecorder) record(obj crclient.Object, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch o := obj.(type) {
	case *corev1.Secret:
		r.seen["Secret/"+o.Namespace+"/"+o.Name+"@"+o.ResourceVersion] = true
		owner := metav1.GetControllerOf(o)
		if owner == nil {
			r.errs = append(r.errs, fmt.Errorf("Secret %s/%s has no controller", o.Namespace, o.Name))
			return
		}
		value, ok := o.Data[secretKeyOf(owner.Kind)]
		hash := ""
		if ok {
			hash = credential.Hash(string(value))
		}
		r.secrets = append(r.secrets, secretSeen{
			at:     at,
			owner:  objectKey{owner.Kind, o.Namespace, owner.Name},
			serial: o.Annotations[latchkeyv1.SerialAnnotation],
			hash:   hash,
		})
	case credentialObject:
		k := keyOf(o)
		r.seen[k.Kind+"/"+k.Namespace+"/"+k.Name+"@"+o.GetResourceVersion()] = true
		grace := time.Hour // latchkeyv1.DefaultGracePeriod
		if rot := o.Lifecycle().Rotation; rot != nil && rot.GracePeriod != nil {
			grace = rot.GracePeriod.Duration
		}
		r.statuses[k] = append(r.statuses[k], statusSeen{at: at, status: *o.CredentialStatus().DeepCopy(), grace: grace})
	}
}

// unseen names the listed objects and Secrets whose listed version no watch has delivered yet.
func (r *faultRecorder) unseen(objs []credentialObject, secrets []corev1.Secret) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var missing []string
	for _, obj := range objs {
		k := keyOf(obj)
		if id := k.Kind + "/" + k.Namespace + "/" + k.Name + "@" + obj.GetResourceVersion(); !r.seen[id] {
			missing = append(missing, id)
		}
	}
	for _, s := range secrets {
		if id := "Secret/" + s.Namespace + "/" + s.Name + "@" + s.ResourceVersion; !r.seen[id] {
			missing = append(missing, id)
		}
	}
	return missing
}

// credentialHashes is every credential hash a Secret was seen holding.
func (r *faultRecorder) credentialHashes() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	hashes := map[string]bool{}
	for _, s := range r.secrets {
		if s.hash != "" {
			hashes[s.hash] = true
		}
	}
	return hashes
}

// faultReport is what the recorded history shows. Credentials are named by key
// ID (the first 12 hex digits of the hash), never by value.
type faultReport struct {
	statuses, secretVersions, rotations, gracePrunes int
	// acrossKill counts credentials seen in a Secret before a kill and accepted by
	// status only after it: the crash window between the two writes, hit.
	acrossKill                                  int
	serialReused, neverInSecret, serialWentBack []string
	droppedEarly, reaccepted, badSecrets        []string
	neverAccepted                               []string
	// staleRotations are rotation requests that status records as handled by a
	// credential a Secret held before the request was sent.
	staleRotations []string
}

func (r faultReport) summary() string {
	return fmt.Sprintf("%d statuses and %d Secret versions; %d credentials entered a grace period, %d were pruned at its end; "+
		"%d were written to a Secret before a kill and recorded in status after it; %d rotation requests were answered with a credential older than the request",
		r.statuses, r.secretVersions, r.rotations, r.gracePrunes, r.acrossKill, len(r.staleRotations))
}

// accepted is what the history says of one credential a status accepted.
type accepted struct {
	serial   int64
	notAfter *time.Time // once a status gave it one
}

// analyse judges the whole history. Call it once the watches have stopped.
func (r *faultRecorder) analyse() faultReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	var report faultReport
	report.secretVersions = len(r.secrets)

	// One object and serial, one credential: first from every Secret version...
	type issued struct {
		obj    objectKey
		serial int64
	}
	hashOf := map[issued]string{}
	inSecret := map[issued]map[string]bool{}
	secretSince := map[issued]time.Time{} // when a Secret was first seen holding it
	statusSince := map[issued]time.Time{} // when a status was first seen accepting it
	note := func(at issued, hash, where string) {
		if previous, ok := hashOf[at]; ok && previous != hash {
			report.serialReused = append(report.serialReused, fmt.Sprintf("%s serial %d: %s and %s (%s)",
				at.obj, at.serial, credential.KeyID(previous), credential.KeyID(hash), where))
			return
		}
		hashOf[at] = hash
	}
	for _, s := range r.secrets {
		serial, err := strconv.ParseInt(s.serial, 10, 64)
		if err != nil || s.hash == "" {
			report.badSecrets = append(report.badSecrets, fmt.Sprintf("%s: a Secret version with serial %q and no credential", s.owner, s.serial))
			continue
		}
		at := issued{s.owner, serial}
		note(at, s.hash, "in a Secret")
		if _, ok := secretSince[at]; !ok {
			secretSince[at] = s.at
		}
		if inSecret[at] == nil {
			inSecret[at] = map[string]bool{}
		}
		inSecret[at][s.hash] = true
	}
	// ...then from every status, in the order the API server wrote them.
	for obj, history := range r.statuses {
		report.statuses += len(history)
		known := map[string]*accepted{}
		dropped := map[string]bool{}
		var serial int64
		lastRequest := ""
		for _, seen := range history {
			status := seen.status
			if status.LastRotateRequest != lastRequest && status.LastRotateRequest != "" && len(status.Credentials) > 0 {
				// The status that records a request as handled names the credential that handled it.
				current := issued{obj, status.Credentials[0].Serial}
				requested, ok := r.requested[obj][status.LastRotateRequest]
				if written, inASecret := secretSince[current]; ok && inASecret && written.Before(requested) {
					// A kill in between, or a status write that lost to the request's own
					// change of the object (optimistic lock), leaves the credential to be adopted.
					how := "no kill in between"
					if slices.ContainsFunc(r.kills, func(k time.Time) bool { return written.Before(k) && k.Before(seen.at) }) {
						how = "a manager was killed in between"
					}
					report.staleRotations = append(report.staleRotations, fmt.Sprintf("%s: request %q sent at %s, answered with %s serial %d, in the Secret by %s (%s)",
						obj, status.LastRotateRequest, requested.Format(time.StampMilli), credential.KeyID(status.Credentials[0].Hash),
						current.serial, written.Format(time.StampMilli), how))
				}
			}
			lastRequest = status.LastRotateRequest
			if status.Serial < serial {
				report.serialWentBack = append(report.serialWentBack, fmt.Sprintf("%s: serial %d after %d", obj, status.Serial, serial))
			}
			serial = max(serial, status.Serial)
			current := map[string]bool{}
			for _, c := range status.Credentials {
				current[c.Hash] = true
				at := issued{obj, c.Serial}
				note(at, c.Hash, "in status")
				if _, ok := statusSince[at]; !ok {
					statusSince[at] = seen.at
				}
				if !inSecret[at][c.Hash] {
					report.neverInSecret = append(report.neverInSecret, fmt.Sprintf("%s: %s serial %d", obj, credential.KeyID(c.Hash), c.Serial))
				}
				if dropped[c.Hash] {
					report.reaccepted = append(report.reaccepted, fmt.Sprintf("%s: %s serial %d", obj, credential.KeyID(c.Hash), c.Serial))
				}
				a := known[c.Hash]
				if a == nil {
					a = &accepted{serial: c.Serial}
					known[c.Hash] = a
				}
				if c.NotAfter != nil && a.notAfter == nil {
					report.rotations++
					t := c.NotAfter.Time
					a.notAfter = &t
				}
			}
			for hash, a := range known {
				if current[hash] {
					continue
				}
				// The grace period ends at the notAfter status gave the credential; one
				// never seen with a notAfter was current when it went, and its grace
				// period runs from when its successor was issued.
				end, why := graceEnd(a, status, seen.grace)
				switch {
				case why != "":
					report.droppedEarly = append(report.droppedEarly, fmt.Sprintf("%s: %s serial %d dropped at %s: %s",
						obj, credential.KeyID(hash), a.serial, seen.at.Format(time.StampMilli), why))
				case seen.at.Before(end):
					// seen.at is after the write, so the write was before end too.
					report.droppedEarly = append(report.droppedEarly, fmt.Sprintf("%s: %s serial %d dropped by %s, its grace period ran until %s",
						obj, credential.KeyID(hash), a.serial, seen.at.Format(time.StampMilli), end.Format(time.StampMilli)))
				default:
					report.gracePrunes++
				}
				delete(known, hash)
				dropped[hash] = true
			}
		}
	}
	for at, written := range secretSince {
		recorded, ok := statusSince[at]
		if !ok {
			report.neverAccepted = append(report.neverAccepted, fmt.Sprintf("%s: serial %d", at.obj, at.serial))
			continue
		}
		if slices.ContainsFunc(r.kills, func(k time.Time) bool { return written.Before(k) && k.Before(recorded) }) {
			report.acrossKill++
		}
	}
	for _, list := range [][]string{report.neverAccepted, report.staleRotations, report.serialReused, report.neverInSecret, report.serialWentBack, report.droppedEarly, report.reaccepted, report.badSecrets} {
		slices.Sort(list)
	}
	return report
}

// graceEnd is when the grace period of a credential that status no longer
// accepts ended, or why it had none.
func graceEnd(a *accepted, status latchkeyv1.CredentialStatus, grace time.Duration) (time.Time, string) {
	if a.notAfter != nil {
		return *a.notAfter, ""
	}
	var successor *latchkeyv1.CredentialHash
	for i, c := range status.Credentials {
		if c.Serial > a.serial && (successor == nil || c.Serial < successor.Serial) {
			successor = &status.Credentials[i]
		}
	}
	if successor == nil {
		return time.Time{}, "it was current and nothing newer replaced it"
	}
	return successor.IssuedAt.Add(grace), ""
}
