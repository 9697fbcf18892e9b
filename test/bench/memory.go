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

// memoryPoint is the resident set size (VmRSS) of each process with keys APIKeys;
// 0 where a process could not be read.
type memoryPoint struct {
	keys                            int
	tokenServer, manager, apiserver int64
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
	m := memoryPoint{keys: keys, tokenServer: rss}
	m.manager, _ = b.c.manager.rssBytes()
	if pid, ok := childPIDs()["kube-apiserver"]; ok {
		m.apiserver, _ = procStatusKiB(pid, "VmRSS:")
	}
	b.report.memory = append(b.report.memory, m)
	logf("  RSS with %d APIKeys: token server %s, manager %s, kube-apiserver %s", keys, mib(m.tokenServer), mib(m.manager), mib(m.apiserver))
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
	b.report.memory[0].manager = rss
	logf("  manager RSS with no APIKeys (restarted): %s", mib(rss))
	return nil
}

// settledRSS waits for the token server's start-up garbage to be collected and
// returns to its resident set size.
func (b *bench) settledRSS(ctx context.Context) (int64, error) {
	if err := sleep(ctx, settleTime); err != nil {
		return 0, err
	}
	if b.s.profileDir != "" {
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
