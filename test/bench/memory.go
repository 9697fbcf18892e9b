package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// memoryPoint is the resident set size (VmRSS) of each process with keys APIKeys,
// and what each holds as steady state (envelope.go); 0 where a process could not be read.
type memoryPoint struct {
	keys                            int
	tokenServer, manager, apiserver int64
	// heap: HeapInuse after a forced GC, by process (tokenServer, manager, apiserver, authz).
	heap      map[string]int64
	authzRSS  int64
	etcdInUse int64
	objects   *objectSizes // one APIKey's and its Secret's, as stored (nil with no keys)
	// managerBefore and managerFresh: the heap after a GC of the -before build's
	// manager and of this build's, each started afresh with the keys in place.
	managerBefore, managerFresh int64
}

// managerHeapFrom measures, for a before/after pair, the heap after a GC of the
// manager of binary and then of this build's, each started afresh with the keys in
// place and given the time its caches take to fill and its first reconciles (no-ops:
// every key is Ready) take to end. Both fresh: a manager that reconciled the keys
// itself holds what it decoded from watch events rather than from one list.
func (b *bench) managerHeapFrom(ctx context.Context, binary string) (before, after int64, err error) {
	measure := func(start func(context.Context) error) (int64, error) {
		b.c.manager.stop()
		if err := start(ctx); err != nil {
			return 0, err
		}
		if err := sleep(ctx, 3*settleTime); err != nil {
			return 0, err
		}
		return heapAfterGC(pprofGet(b.c.pprofMgr))
	}
	if before, err = measure(func(ctx context.Context) error { return b.c.startManagerFrom(ctx, binary) }); err != nil {
		return 0, 0, err
	}
	if after, err = measure(b.c.startManager); err != nil {
		return 0, 0, err
	}
	if b.s.profileDir != "" {
		// What a fresh manager's heap holds, for `go tool pprof -sample_index=inuse_space`.
		if data, err := pprofGet(b.c.pprofMgr)("/debug/pprof/heap"); err == nil {
			_ = os.WriteFile(filepath.Join(b.s.profileDir, fmt.Sprintf("manager-fresh-heap-%d.pprof", b.s.keys)), data, 0o644)
		}
	}
	logf("  managers started afresh with %d APIKeys, heap after GC: the -before build's %s, this build's %s", b.s.keys, mib(before), mib(after))
	return before, after, nil
}

// settleTime lets a process's start-up (or reconcile) garbage be collected before its RSS is read.
const settleTime = 5 * time.Second

// baseline starts the token server and measures every process's memory before any APIKey.
func (b *bench) baseline(ctx context.Context) error {
	if _, err := b.restartTokenServer(ctx, "RS256"); err != nil {
		return err
	}
	return b.measureMemory(ctx, 0)
}

// measureMemory records the RSS of the token server, the manager and kube-apiserver
// with keys APIKeys, after settleTime.
func (b *bench) measureMemory(ctx context.Context, keys int) error {
	rss, err := b.settledRSS(ctx)
	if err != nil {
		return err
	}
	m := memoryPoint{keys: keys, tokenServer: rss, heap: map[string]int64{}}
	m.manager, _ = b.c.manager.rssBytes()
	if pid, ok := childPIDs()["kube-apiserver"]; ok {
		m.apiserver, _ = procStatusKiB(pid, "VmRSS:")
	}
	for name, get := range map[string]func(string) ([]byte, error){
		"tokenServer": pprofGet(b.pprofAddr), "manager": pprofGet(b.c.pprofMgr), "apiserver": func(path string) ([]byte, error) { return b.c.apiserverGet(ctx, path, "") },
	} {
		heap, err := heapAfterGC(get)
		if err != nil {
			return fmt.Errorf("the %s's heap: %w", name, err)
		}
		m.heap[name] = heap
		if b.s.profileDir != "" {
			// What the heap holds, for `go tool pprof -sample_index=inuse_space`.
			if data, err := get("/debug/pprof/heap"); err == nil {
				_ = os.WriteFile(filepath.Join(b.s.profileDir, fmt.Sprintf("%s-heap-%d.pprof", name, keys)), data, 0o644)
			}
		}
	}
	if b.s.before != "" && keys == b.s.keys {
		if m.managerBefore, m.managerFresh, err = b.managerHeapFrom(ctx, b.s.before); err != nil {
			return fmt.Errorf("the -before manager's heap: %w", err)
		}
	}
	heap, authzRSS, err := b.authzFootprint(ctx)
	if err != nil {
		return fmt.Errorf("an authorizer's memory: %w", err)
	}
	m.heap["authz"], m.authzRSS = heap, authzRSS
	if m.etcdInUse, err = b.etcdInUse(ctx); err != nil {
		return err
	}
	if keys > 0 {
		// A key the introspection load uses: the token server has recorded its use, once the loads ran.
		sizes, err := b.readObjectSizes(ctx, keyName(b.s.revocations))
		if err != nil {
			return err
		}
		m.objects = &sizes
	}
	b.report.memory = append(b.report.memory, m)
	logf("  with %d APIKeys, heap after GC: token server %s, manager %s, authorizer %s, kube-apiserver %s; etcd in use %s; RSS: token server %s, manager %s, kube-apiserver %s",
		keys, mib(m.heap["tokenServer"]), mib(m.heap["manager"]), mib(m.heap["authz"]), mib(m.heap["apiserver"]), mib(m.etcdInUse),
		mib(m.tokenServer), mib(m.manager), mib(m.apiserver))
	return nil
}

// managerBaseline measures a manager started after the baseline (the reconcile
// floor restarts it): the baseline is the running process's, before any APIKey.
func (b *bench) managerBaseline(ctx context.Context) error {
	if len(b.report.memory) == 0 || b.report.memory[0].keys != 0 {
		return nil
	}
	if err := sleep(ctx, settleTime); err != nil {
		return err
	}
	rss, err := b.c.manager.rssBytes()
	if err != nil {
		return err
	}
	heap, err := heapAfterGC(pprofGet(b.c.pprofMgr))
	if err != nil {
		return err
	}
	b.report.memory[0].manager, b.report.memory[0].heap["manager"] = rss, heap
	logf("  manager with no APIKeys (restarted): RSS %s, heap after GC %s", mib(rss), mib(heap))
	return nil
}

// settledRSS waits for the token server's start-up garbage to be collected and
// returns to its resident set size.
func (b *bench) settledRSS(ctx context.Context) (int64, error) {
	if err := sleep(ctx, settleTime); err != nil {
		return 0, err
	}
	if b.s.profileDir != "" && b.pprofAddr != "" {
		if resp, err := http.Get("http://" + b.pprofAddr + "/debug/pprof/heap"); err == nil {
			if f, err := os.Create(filepath.Join(b.s.profileDir, fmt.Sprintf("tokenserver-heap-%d.pprof", time.Now().Unix()))); err == nil {
				_, _ = io.Copy(f, resp.Body)
				f.Close()
			}
			resp.Body.Close()
		}
	}
	return b.server.rssBytes()
}

// sleep waits d, or less if ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
