package main

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// An interrupted run stops inside the child it waits for (a load, a raw
// reference), not after it: the child is killed once the run's context ends.
func TestRunUntilDoneKillsTheChildWhenTheRunEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := runUntilDone(ctx, exec.Command("sleep", "30"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the run's context.Canceled", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("returned after %s: the child ran on", waited)
	}

	// A child that ends by itself: its own result, whatever ctx does afterwards.
	if err := runUntilDone(context.Background(), exec.Command("true")); err != nil {
		t.Fatalf("true: %v", err)
	}
	var exit *exec.ExitError
	if err := runUntilDone(context.Background(), exec.Command("false")); !errors.As(err, &exit) {
		t.Fatalf("false: got %v, want its exit status", err)
	}
}
