package controllers

import (
	"sync"
	"time"
)

// An API event rechecks the ScopesKnown verdict of every credential it may
// concern: all of a namespace's credentials when it gets its first API or loses
// its last, and, in every namespace an API accepts (all of them, for "*"), those
// that carry a scope its catalogue gained or lost. One write of a tenant's own
// API so costs up to one status write per credential concerned, its own or
// another tenant's (make bench: 10,242 writes, 89 s of the manager's, for a
// namespace's first API), and a tenant that flips an API back and forth would
// repeat that, and the Warning Events of the verdicts it flips, as fast as it
// can write.
//
// apiPacer bounds it by the namespace of the API that changed. An event of a
// namespace quiet for a whole window is acted on at once, and opens a window of
// apiPaceBase. Each later event before the namespace is quiet again widens the
// window, twice as long each time up to apiPaceMax: one after the window's end
// is acted on at once, one within it waits for its end, where every event that
// waited is acted on together (and one after that waits for the end of the
// next, doubled, window). Whatever their pace, a namespace's API events so
// recheck at 0, 1, 3, 7, … s and then once every five minutes at most: one
// round a window. An API applied and edited now and then is rechecked at once,
// and a burst of edits at most a window late. The verdict is advice (Ready is
// untouched), so lateness costs a kubectl column, not a request. The pace is
// the namespace's, whoever edits its APIs.
type apiPacer struct {
	now func() time.Time // the work queue's delays are of the real clock

	mu          sync.Mutex
	byNamespace map[string]*apiPace
	swept       time.Time
}

// apiPace is one namespace's window: events before until wait for it.
type apiPace struct {
	until  time.Time
	window time.Duration
	waited bool // an event waits for until: the round there is this window's
}

const (
	apiPaceBase = time.Second
	apiPaceMax  = 5 * time.Minute
)

func newAPIPacer() *apiPacer {
	return &apiPacer{now: time.Now, byNamespace: map[string]*apiPace{}}
}

// wait is how long the credentials an API event of namespace concerns wait
// before they are rechecked: 0 to act now.
func (p *apiPacer) wait(namespace string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	pace := p.byNamespace[namespace]
	switch {
	case pace == nil || !now.Before(pace.until.Add(pace.window)): // a whole window quiet
		p.sweep(now)
		p.byNamespace[namespace] = &apiPace{until: now.Add(apiPaceBase), window: apiPaceBase}
		return 0
	case now.Before(pace.until):
		pace.waited = true
		return pace.until.Sub(now)
	}
	pace.window = min(2*pace.window, apiPaceMax)
	if pace.waited {
		// The window ended in a round: the next began there, and this event
		// waits for its end.
		pace.until = pace.until.Add(pace.window)
		return pace.until.Sub(now)
	}
	pace.until = now.Add(pace.window)
	return 0
}

// sweep forgets the namespaces quiet for a whole window: they start again at
// the base, as if never seen. It runs as a namespace starts again, at most once
// a base window, so the map holds the namespaces whose APIs changed within the
// last windows, and a stream of namespaces costs one pass a second.
func (p *apiPacer) sweep(now time.Time) {
	if now.Before(p.swept.Add(apiPaceBase)) {
		return
	}
	p.swept = now
	for namespace, pace := range p.byNamespace {
		if !now.Before(pace.until.Add(pace.window)) {
			delete(p.byNamespace, namespace)
		}
	}
}
