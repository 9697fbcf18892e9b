package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

// Rate limits (issue 26), at the authorizer:
//   - the forward-auth API-key check with a rate limit on the API (one no request
//     reaches: every check counts in a budget and answers with the RateLimit
//     fields), beside the same load just before with none;
//   - a limit shared by two authorizer replicas (--rate-limit-service, an
//     EndpointSlice with two ready endpoints) under a skewed open-loop load: 80%
//     of the requests to one replica, 20% to the other, at twice the limit in all.

// sharedLimit is the skewed load's limit: requests per second, and its burst.
const (
	sharedLimit      = 200
	sharedLimitBurst = 20
	sharedLimitFor   = 10 * time.Second
)

type sharedLimitRun struct {
	offered, allowed [2]int64 // by replica
	window           time.Duration
}

// setAPIRateLimit sets (or, with nil, removes) the bench API's rate limit, and
// waits until the authorizer at httpAddr answers with (or without) its fields.
func (b *bench) setAPIRateLimit(ctx context.Context, httpAddr, key string, rl *latchkeyv1.APIRateLimit) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"rateLimit": rl}})
	if err != nil {
		return err
	}
	api := &latchkeyv1.API{ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: apiName}}
	if err := b.c.client.Patch(ctx, api, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		_, h, err := forwardAuthAnswer(httpAddr, key)
		if err == nil && (h.Get("RateLimit-Policy") != "") == (rl != nil) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the authorizer did not apply the API's new rate limit within 10 s")
}

// sharedLimit starts two authorizers that share each limit by the EndpointSlice
// of a Service of their own, and sends the skewed load with one key.
func (b *bench) sharedLimit(ctx context.Context, kubeconfig, key string) (*sharedLimitRun, error) {
	const service = "bench-authz"
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: operatorNamespace, Name: service, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
		},
	}
	if err := b.c.client.Create(ctx, slice); err != nil {
		return nil, err
	}
	defer func() { _ = b.c.client.Delete(context.Background(), slice) }()
	var addrs [2]string
	for i := range addrs {
		grpcAddr, _ := testenv.FreeAddr()
		httpAddr, err := testenv.FreeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = httpAddr
		p, err := start(b.c.dir, fmt.Sprintf("authz-shared-%c", 'a'+i), allCPUs(), []string{"KUBECONFIG=" + kubeconfig, "POD_NAMESPACE=" + operatorNamespace},
			repoPath("bin", "latchkey"), "authz", "--grpc-bind-address="+grpcAddr, "--http-bind-address="+httpAddr, "--metrics-bind-address=0",
			"--issuer-url="+b.c.issuer, "--jwks-namespace="+operatorNamespace, "--rate-limit-service="+service)
		if err != nil {
			return nil, err
		}
		defer p.stop()
		if _, err := p.waitReady(ctx, "http://"+httpAddr+"/readyz", 2*time.Minute); err != nil {
			return nil, err
		}
	}
	burst := int32(sharedLimitBurst)
	limit := &latchkeyv1.APIRateLimit{RateLimit: latchkeyv1.RateLimit{Requests: sharedLimit, Per: metav1.Duration{Duration: time.Second}, Burst: &burst}}
	for _, addr := range addrs {
		if err := b.setAPIRateLimit(ctx, addr, key, limit); err != nil {
			return nil, err
		}
	}
	// Let the probes' budget refill, then send the load.
	time.Sleep(time.Second)
	run := &sharedLimitRun{window: sharedLimitFor}
	rates := [2]float64{1.6 * sharedLimit, 0.4 * sharedLimit}
	var wg sync.WaitGroup
	for i := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var offered, allowed atomic.Int64
			interval := time.Duration(float64(time.Second) / rates[i])
			start := time.Now()
			var inflight sync.WaitGroup
			for n := 0; ; n++ {
				at := start.Add(time.Duration(n) * interval)
				if at.Sub(start) >= sharedLimitFor {
					break
				}
				time.Sleep(time.Until(at))
				offered.Add(1)
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					if status, err := forwardAuth(addrs[i], key); err == nil && status == http.StatusOK {
						allowed.Add(1)
					}
				}()
			}
			inflight.Wait()
			run.offered[i], run.allowed[i] = offered.Load(), allowed.Load()
		}()
	}
	wg.Wait()
	if err := b.setAPIRateLimit(ctx, addrs[0], key, nil); err != nil {
		return nil, err
	}
	logf("  shared limit %d/s (burst %d) over two replicas, %s at 80/20: allowed %d + %d of %d + %d offered",
		sharedLimit, sharedLimitBurst, sharedLimitFor, run.allowed[0], run.allowed[1], run.offered[0], run.offered[1])
	return run, nil
}

// sharedLimitRow renders the skewed load's accuracy: what it let through against
// the limit over the window, and against the model (each replica lets through
// min(offered, its share) plus its burst share).
func (r *report) sharedLimitRow(add func(...string), s *sharedLimitRun) {
	limitOverWindow := float64(sharedLimit)*s.window.Seconds() + sharedLimitBurst
	allowed := s.allowed[0] + s.allowed[1]
	share := float64(sharedLimit) / 2 * s.window.Seconds()
	model := min(float64(s.offered[0]), share+sharedLimitBurst/2) + min(float64(s.offered[1]), share+sharedLimitBurst/2)
	add(fmt.Sprintf("10. Rate limit shared by 2 authorizer replicas (%d/s, burst %d), %s of an open-loop load at 2× the limit, 80%% to one replica", sharedLimit, sharedLimitBurst, s.window),
		fmt.Sprintf("%d let through (%d + %d of %d + %d offered)", allowed, s.allowed[0], s.allowed[1], s.offered[0], s.offered[1]),
		fmt.Sprintf("the limit over the window: %.0f; the model (each replica: its share, or what it is offered): %.0f", limitOverWindow, model),
		fmt.Sprintf("%.1f%% of the limit", 100*float64(allowed)/limitOverWindow), "never above the limit; the model within 5%",
		yesNo(float64(allowed) <= limitOverWindow*1.02 && abs(float64(allowed)-model) <= 0.05*model))
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
