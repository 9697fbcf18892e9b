package tokenserver_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/signingkeys"
	"github.com/latchkey-dev/latchkey/tokenserver"
)

var _ = Describe("The last-use write budget", func() {
	const (
		keys     = 1000
		replicas = 3
		buckets  = 3
	)

	It("changes each key's lastUsedAt at most once per granularity bucket, whatever the replica count", func() {
		ctx := context.Background()
		ns := newNamespace()
		resourceServer := newResourceServer(ns, "budget-api", nil)

		By(fmt.Sprintf("issuing %d API keys", keys))
		for i := range keys {
			Expect(k8s.Create(ctx, &latchkeyv1.APIKey{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("key-%04d", i)},
				Spec:       latchkeyv1.APIKeySpec{Scopes: []string{"leads:read"}},
			})).To(Succeed())
		}
		var settled latchkeyv1.APIKeyList
		Eventually(func(g Gomega) {
			g.Expect(k8s.List(ctx, &settled, client.InNamespace(ns))).To(Succeed())
			g.Expect(settled.Items).To(HaveLen(keys))
			for _, k := range settled.Items {
				g.Expect(meta.IsStatusConditionTrue(k.Status.Conditions, latchkeyv1.ConditionReady)).To(BeTrue(), k.Name)
				g.Expect(k.Status.ObservedGeneration).To(Equal(k.Generation), k.Name)
			}
		}).WithTimeout(2 * time.Minute).Should(Succeed())
		var secrets corev1.SecretList
		Expect(k8s.List(ctx, &secrets, client.InNamespace(ns))).To(Succeed())
		var plaintextKeys []string
		for _, s := range secrets.Items {
			if key, ok := s.Data[latchkeyv1.APIKeySecretKey]; ok {
				plaintextKeys = append(plaintextKeys, string(key))
			}
		}
		Expect(len(plaintextKeys)).To(Equal(keys))
		plaintexts = append(plaintexts, plaintextKeys...)

		By("watching every change to the keys from here on")
		watchCtx, stopWatching := context.WithCancel(ctx)
		defer stopWatching()
		changes := recordLastUsedChanges(watchCtx, ns, settled.ResourceVersion)

		By(fmt.Sprintf("starting %d token servers on one injected clock, truncating to a minute", replicas))
		start := time.Now().Truncate(time.Minute).Add(time.Minute)
		clk := clocktesting.NewFakePassiveClock(start)
		var servers []*runningServer
		for range replicas {
			servers = append(servers, startServerWith(tokenServerConfig, signingkeys.RS256, func(o *tokenserver.Options) {
				o.Clock = clk
				o.Namespaces = []string{ns}
				o.LastUsedFlushInterval = 50 * time.Millisecond
				o.LastUsedGranularity = time.Minute
			}, true))
		}
		defer func() {
			for _, s := range servers {
				s.Stop()
			}
		}()

		for b := range buckets {
			bucket := start.Add(time.Duration(b) * time.Minute)
			By(fmt.Sprintf("authenticating every key through every server, twice, in bucket %d", b))
			for pass := range 2 {
				clk.SetTime(bucket.Add(time.Duration(10+20*pass) * time.Second))
				var wg sync.WaitGroup
				for _, s := range servers {
					wg.Go(func() {
						defer GinkgoRecover()
						for _, key := range plaintextKeys {
							Expect(s.active(resourceServer, key)).To(BeTrue())
						}
					})
				}
				wg.Wait()
			}
			Eventually(func(g Gomega) {
				var list latchkeyv1.APIKeyList
				g.Expect(k8s.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
				for _, k := range list.Items {
					g.Expect(k.Status.LastUsedAt).NotTo(BeNil(), k.Name)
					g.Expect(k.Status.LastUsedAt.Time.Equal(bucket)).To(BeTrue(), "%s: lastUsedAt %s, want %s", k.Name, k.Status.LastUsedAt.Time, bucket)
				}
			}).WithTimeout(time.Minute).Should(Succeed())
			// Every use noted must have been flushed (written or skipped) before the
			// clock moves on, so that a late write would show in the count below.
			for _, s := range servers {
				Eventually(func() float64 {
					return scrape(s.Metrics, "latchkey_tokenserver_last_used_pending", "")
				}).Should(BeZero())
			}
		}

		By("counting the watch events: one per key per bucket, none more")
		// A marker write after everything: once the watch has delivered it, it has
		// delivered every change before it.
		marker := settled.Items[0].DeepCopy()
		mergePatch(marker, func(k *latchkeyv1.APIKey) { k.Spec.DisplayName = "marker" })
		Eventually(changes.sawMarker).Should(BeTrue())
		perKey := changes.snapshot()
		Expect(perKey).To(HaveLen(keys))
		for name, seen := range perKey {
			Expect(seen).To(HaveLen(buckets), "%s: lastUsedAt changes %v", name, seen)
			for b, at := range seen {
				Expect(at.Equal(start.Add(time.Duration(b)*time.Minute))).To(BeTrue(), "%s: change %d to %s", name, b, at)
			}
		}
		Expect(changes.otherEvents()).To(BeZero(), "no event that did not change lastUsedAt (a no-op write stores nothing)")

		var writes, skipped float64
		for _, s := range servers {
			writes += scrape(s.Metrics, "latchkey_tokenserver_last_used_writes_total", `kind="APIKey"`)
			skipped += scrape(s.Metrics, "latchkey_tokenserver_last_used_skipped_total", `kind="APIKey"`)
		}
		GinkgoWriter.Printf("last-use patches sent by %d replicas: %v for %d status changes; uses skipped: %v\n",
			replicas, writes, keys*buckets, skipped)
		Expect(writes).To(BeNumerically(">=", keys*buckets))
		Expect(skipped).To(BeNumerically(">", 0))
	})
})

// lastUsedChanges records, per APIKey, each new status.lastUsedAt the watch delivered.
type lastUsedChanges struct {
	mu     sync.Mutex
	last   map[string]*metav1.Time
	seen   map[string][]time.Time
	other  int
	marker bool
}

// recordLastUsedChanges watches the APIKeys of ns from resourceVersion until ctx
// ends. A watch the API server closes (a slow watcher on a loaded machine) is
// reopened from the last event seen, as a Reflector would: no event is lost.
func recordLastUsedChanges(ctx context.Context, ns, resourceVersion string) *lastUsedChanges {
	c := &lastUsedChanges{last: map[string]*metav1.Time{}, seen: map[string][]time.Time{}}
	watcher := watchClient()
	go func() {
		defer GinkgoRecover()
		for ctx.Err() == nil {
			w, err := watcher.Watch(ctx, &latchkeyv1.APIKeyList{}, client.InNamespace(ns),
				&client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion}})
			if err != nil {
				if ctx.Err() == nil {
					Fail("watching APIKeys: " + err.Error())
				}
				return
			}
			for ev := range w.ResultChan() {
				k, ok := ev.Object.(*latchkeyv1.APIKey)
				if !ok {
					continue
				}
				resourceVersion = k.ResourceVersion
				if ev.Type == watch.Modified {
					c.add(k)
				}
			}
			w.Stop()
		}
	}()
	return c
}

func (c *lastUsedChanges) add(k *latchkeyv1.APIKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.marker: // what follows the marker is not counted
	case k.Spec.DisplayName == "marker":
		c.marker = true
	case !k.Status.LastUsedAt.Equal(c.last[k.Name]):
		c.last[k.Name] = k.Status.LastUsedAt
		c.seen[k.Name] = append(c.seen[k.Name], k.Status.LastUsedAt.Time)
	default:
		c.other++
	}
}

func (c *lastUsedChanges) sawMarker() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.marker
}

func (c *lastUsedChanges) otherEvents() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.other
}

func (c *lastUsedChanges) snapshot() map[string][]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]time.Time{}
	for k, v := range c.seen {
		out[k] = append([]time.Time(nil), v...)
	}
	return out
}

func watchClient() client.WithWatch {
	c, err := client.NewWithWatch(env.Config, client.Options{Scheme: scheme})
	ExpectWithOffset(1, err).NotTo(HaveOccurred())
	return c
}

// scrape returns the value of the series name{labels} in a Prometheus text
// exposition, 0 when absent.
func scrape(metricsURL, name, labels string) float64 {
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	for line := range strings.Lines(string(get(metricsURL).Body)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			var v float64
			_, err := fmt.Sscan(strings.TrimSpace(rest), &v)
			ExpectWithOffset(1, err).NotTo(HaveOccurred())
			return v
		}
	}
	return 0
}
