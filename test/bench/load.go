package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/latchkey-dev/latchkey/internal/serve"
)

// The load generator and the signing reference run as child processes of the
// benchmark, pinned to their own core (taskset) with GOMAXPROCS=1: `bench load`
// and `bench work` (and `bench list`: coldstart.go). Jobs arrive as JSON on stdin
// (they carry credentials, which must not show on a command line) and results
// leave as JSON on stdout.

// loadJob is one load: each connection sends a request, waits for its response,
// and sends the next (at once, or when Rate paces it), until the duration is over.
type loadJob struct {
	Addr        string
	Requests    [][]byte // raw HTTP/1.1 requests; connection i starts at request i (see Rate) and cycles
	Connections int
	Warmup      time.Duration // requests completed during the warmup are not counted
	Duration    time.Duration // measured time, after the warmup
	// Rate paces the load (requests per second over all connections); 0 is a closed
	// loop. A paced load spreads its connections evenly over Requests, so that each
	// request recurs at an even interval.
	Rate float64
	// ExpectStatus and ExpectBody (a substring) decide whether a response counts as a success.
	ExpectStatus int
	ExpectBody   string
	// Floor, when set, is interleaved with Requests on the same connections: time
	// is cut into slices of Slice from the end of the warm-up, Requests sent in the
	// one of each pair of slices and Floor (the same requests at the shape's floor,
	// same count) in the other (sideOfSlice), answered with FloorExpectBody. A row and its floor then share
	// whatever the machine does over the run: its speed drifts by tens of percent
	// within minutes, which two loads one after the other measure as a difference
	// between them. Duration must be a whole number of slice pairs. ServerPID's CPU
	// is read at each slice's beginning and end and charged to that slice's side.
	Floor           [][]byte `json:",omitempty"`
	FloorExpectBody string   `json:",omitempty"`
	Slice           time.Duration
	ServerPID       int
	// FloorAddr, when set, is where the Floor side goes, on connections of its
	// own, and FloorServerPID the process answering there: a before/after pair
	// interleaves two builds' servers, both on the server core, each idle while
	// the other's slice runs.
	FloorAddr      string `json:",omitempty"`
	FloorServerPID int    `json:",omitempty"`
	// RawSlice, when set, follows each pair of slices with a raw slice of its
	// length in which no request is sent: `bench work` then does the row's
	// unavoidable work on the server core (workJob.Schedule), so that the raw
	// reference is measured between the row's and its floor's slices rather than
	// minutes apart; it is timed from RawSettle into the slice, once the server
	// has answered what was in flight. The measured window is then longer than
	// Duration, which stays the row's and the floor's time. Start, when set, is
	// when the load begins (the work's schedule counts from it); else at once.
	RawSlice  time.Duration `json:",omitempty"`
	RawSettle time.Duration `json:",omitempty"`
	Start     time.Time     `json:",omitzero"`
	// Together, with FloorAddr and FloorServerPID, runs the Floor side at the
	// same time as the row's instead of in alternate slices: Connections
	// connections of its own to the other server, which shares the server core
	// with the row's in an equal CPU share (sharedCore). Both sides then run in
	// the same milliseconds, so that whatever the machine's speed does reaches
	// both alike, and each is measured over the whole window and per
	// CPU-second of its server: both servers' CPU is read at each Slice's
	// beginning and end, Slice only cutting the window for Pairs.
	Together bool `json:",omitempty"`
}

// interleaved tells whether the job alternates Requests with its Floor.
func (job loadJob) interleaved() bool { return len(job.Floor) > 0 }

// schedule is the interleaved load's time (Slice, RawSlice) measured from measureFrom.
func (job loadJob) schedule(measureFrom time.Time) schedule {
	return schedule{From: measureFrom, Slice: job.Slice, Raw: job.RawSlice, Settle: job.RawSettle}
}

// measured is how long the load's measured window lasts: Duration, and the raw
// slices between its pairs of slices.
func (job loadJob) measured() time.Duration {
	if !job.interleaved() {
		return job.Duration
	}
	return time.Duration(job.Duration/(2*job.Slice)) * job.schedule(time.Time{}).period()
}

// schedule cuts an interleaved load's time, from From (the end of the warm-up;
// earlier times fall in negative slices), into periods: a pair of slices of
// Slice, one the row's and one the floor's in sideOfSlice's order, and, when
// Raw is set, a raw slice of Raw after them (loadJob.RawSlice), whose first
// Settle is not measured.
type schedule struct {
	From               time.Time
	Slice, Raw, Settle time.Duration
}

// sideRaw is the side of a raw slice: no request is sent in it.
const sideRaw = 2

func (s schedule) period() time.Duration { return 2*s.Slice + s.Raw }

// at is what t falls in: the index k of its slice (0 the first measured) and
// that slice's side (sideOfSlice), or, in a raw slice, its period's index and sideRaw.
func (s schedule) at(t time.Time) (k int64, side int) {
	d, period := t.Sub(s.From), s.period()
	p := int64(d / period)
	if d%period < 0 {
		p-- // floored: the warm-up's periods are negative
	}
	offset := d - time.Duration(p)*period
	if offset >= 2*s.Slice {
		return p, sideRaw
	}
	k = 2*p + int64(offset/s.Slice)
	return k, sideOfSlice(k)
}

// slice is when slice k begins and ends.
func (s schedule) slice(k int64) (begin, end time.Time) {
	begin = s.From.Add(time.Duration(k>>1)*s.period() + time.Duration(k&1)*s.Slice)
	return begin, begin.Add(s.Slice)
}

// rawSlice is when period p's raw slice begins and ends.
func (s schedule) rawSlice(p int64) (begin, end time.Time) {
	begin = s.From.Add(time.Duration(p)*s.period() + 2*s.Slice)
	return begin, begin.Add(s.Raw)
}

// rawMeasured is the part of period p's raw slice in which the work is timed:
// after its Settle, in which the server answers the requests sent before it.
func (s schedule) rawMeasured(p int64) (begin, end time.Time) {
	begin, end = s.rawSlice(p)
	return begin.Add(s.Settle), end
}

// sideOfSlice is the side of slice k (0 the first of the measured window; the
// warm-up's are negative): each pair of slices holds one of each side, in an
// order drawn from a fixed pseudo-random sequence, so that nothing periodic on
// the machine (a timer, a host's scheduling period) falls on one side only.
func sideOfSlice(k int64) int {
	pair := uint64(k >> 1)     // arithmetic: slices -2 and -1 are pair -1
	pair += 0x9e3779b97f4a7c15 // splitmix64's finalizer: any bit of it will do
	pair = (pair ^ pair>>30) * 0xbf58476d1ce4e5b9
	pair = (pair ^ pair>>27) * 0x94d049bb133111eb
	pair ^= pair >> 31
	return int(uint64(k)&1 ^ pair&1)
}

// loadResult is what one load measured.
type loadResult struct {
	Requests   int           // successful responses within the measured window
	Errors     int           // failed ones (wrong status or body, broken connection)
	FirstError string        `json:",omitempty"`
	Seconds    float64       // the measured window
	Rate       float64       // successful responses per second
	P50, P99   time.Duration // latency of successful responses
	Max        time.Duration
	CPUSeconds float64 // CPU the load generator itself used over the whole run
	// ServerCPU is the CPU the measured server used over the whole run (the
	// benchmark's reading); for a side of an interleaved load, the CPU of its
	// measured slices scaled to the whole run, so that it reads the same way.
	ServerCPU float64
	// Floor is the floor's side of an interleaved load (loadJob.Floor).
	Floor *loadResult `json:",omitempty"`
	// Pairs is, for an interleaved load, each pair of slices' rates (this
	// side's, the floor's, and the raw work's in the raw slice after them, 0
	// when there is none), in order: how far a ratio of the whole run moves from
	// pair to pair, which the report gives beside it.
	Pairs [][3]float64 `json:",omitempty"`
	// Raw is the rate of the raw work done in the raw slices (loadJob.RawSlice),
	// or 0, and RawServerBusy the share of their measured part the row's server
	// ran in (a late answer, its GC): time the raw work did not have.
	Raw           float64 `json:",omitempty"`
	RawServerBusy float64 `json:",omitempty"`
}

// perServerCPU is the rate per second of the measured server's CPU: requests
// per CPU-second, the inverse of what one request costs it, over a run of window
// (warm-up and measured time; the warm-up runs at the measured rate). When the
// machine lets neither core run flat out (the server core less than ~95% busy in
// a closed loop), throughput reads low while this still reads the server's cost.
func (l loadResult) perServerCPU(window time.Duration) float64 {
	if l.ServerCPU <= 0 {
		return 0
	}
	return l.Rate * window.Seconds() / l.ServerCPU
}

// runLoad executes a loadJob. It speaks HTTP/1.1 over plain keep-alive TCP
// connections with prebuilt requests and the standard library's response parser:
// per request it costs a fraction of what the server spends, so one core of load
// can saturate one core of server (the /healthz row of the report shows the margin).
func runLoad(job loadJob) (loadResult, error) {
	if len(job.Requests) == 0 || job.Connections < 1 {
		return loadResult{}, fmt.Errorf("a load needs requests and connections")
	}
	if job.interleaved() && (job.Slice <= 0 || job.Duration%(2*job.Slice) != 0 || len(job.Floor) != len(job.Requests)) {
		return loadResult{}, fmt.Errorf("an interleaved load needs as many floor requests as requests and a duration of whole slice pairs")
	}
	if job.Together && (!job.interleaved() || job.FloorAddr == "" || job.ServerPID <= 0 || job.FloorServerPID <= 0 || job.RawSlice > 0 || job.Rate > 0) {
		return loadResult{}, fmt.Errorf("a load of both sides together needs the floor on a server of its own, both servers' PIDs, and a closed loop without raw slices")
	}
	if job.RawSlice < 0 || job.RawSettle < 0 || job.RawSlice > 0 && (!job.interleaved() || job.Rate > 0 || job.RawSettle >= job.RawSlice) {
		return loadResult{}, fmt.Errorf("raw slices need an interleaved closed loop, and a settling time shorter than the slice")
	}
	start := time.Now()
	if !job.Start.IsZero() {
		start = job.Start
		time.Sleep(time.Until(start))
	}
	measureFrom := start.Add(job.Warmup)
	if late := time.Since(measureFrom); !job.Start.IsZero() && late > 0 { // a late start would eat the measured slices, silently
		return loadResult{}, fmt.Errorf("the load started %v after its warm-up was to end", late)
	}
	end := measureFrom.Add(job.measured())
	sched := job.schedule(measureFrom)
	workers := job.Connections
	if job.Together {
		workers = 2 * job.Connections
	}
	results := make([][2]workerResult, workers)
	var wg sync.WaitGroup
	var serverCPU [2]float64
	var rawServerCPU float64
	var windowCPU [][2]float64
	var cpuErr error
	switch {
	case job.Together:
		wg.Go(func() {
			windowCPU, cpuErr = togetherCPU(measureFrom, job.Slice, int(job.Duration/job.Slice), [2]int{job.ServerPID, job.FloorServerPID})
		})
	case job.interleaved() && job.ServerPID > 0:
		wg.Go(func() { serverCPU, rawServerCPU = sideCPU(sched, job.ServerPID, job.FloorServerPID, end) })
	}
	for w := range workers {
		c, perSide := w%job.Connections, -1 // perSide: the worker's one side (Together), else -1
		if job.Together {
			perSide = w / job.Connections
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sides := &results[w]
			for s := range sides {
				sides[s].prepare(job.Slice, job.Duration)
			}
			fail := sides[max(perSide, 0)].fail
			var conns [2]net.Conn
			var readers [2]*bufio.Reader
			for s, addr := range [2]string{job.Addr, job.FloorAddr} {
				if perSide >= 0 && s != perSide {
					continue // Together: each worker has one side, on its own connection
				}
				if addr == "" { // the floor on the row's server: the same connection
					conns[s], readers[s] = conns[0], readers[0]
					continue
				}
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					fail(err)
					return
				}
				defer conn.Close()
				conns[s], readers[s] = conn, bufio.NewReaderSize(conn, 32<<10)
			}
			var body bytes.Buffer
			first, interval := c, time.Duration(0)
			if job.Rate > 0 {
				first = c * len(job.Requests) / job.Connections
				interval = time.Duration(float64(job.Connections) / job.Rate * float64(time.Second))
			}
			for i := first; ; i++ {
				if interval > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i-first) * interval)))
				}
				sent := time.Now()
				if sent.After(end) {
					return
				}
				k, side := int64(-1), 0
				switch {
				case job.Together:
					k, side = int64(-1), perSide
					if !sent.Before(measureFrom) {
						k = int64(sent.Sub(measureFrom) / job.Slice)
					}
				case job.interleaved():
					k, side = sched.at(sent)
				}
				if side == sideRaw { // the load idles: the raw work has the server core
					_, rawEnd := sched.rawSlice(k)
					time.Sleep(time.Until(rawEnd))
					continue
				}
				r, requests, expectBody := &sides[side], job.Requests, job.ExpectBody
				if side == 1 {
					requests, expectBody = job.Floor, job.FloorExpectBody
				}
				if _, err := conns[side].Write(requests[i%len(requests)]); err != nil {
					fail(err)
					return
				}
				resp, err := http.ReadResponse(readers[side], nil)
				if err != nil {
					fail(err)
					return
				}
				body.Reset()
				_, err = body.ReadFrom(resp.Body)
				_ = resp.Body.Close()
				done := time.Now()
				switch {
				case err != nil:
					fail(err)
					return
				case resp.StatusCode != job.ExpectStatus || !bytes.Contains(body.Bytes(), []byte(expectBody)):
					if !done.Before(measureFrom) {
						fail(fmt.Errorf("status %d, body %.200q", resp.StatusCode, body.Bytes()))
					}
				case !done.Before(measureFrom) && !done.After(end):
					r.succeeded(done.Sub(sent), k)
				}
			}
		}()
	}
	wg.Wait()
	if job.Together {
		if cpuErr != nil {
			return loadResult{}, cpuErr
		}
		return togetherOf(results, job.Connections, windowCPU, job.Warmup, job.Duration), nil
	}
	if !job.interleaved() {
		row := make([]workerResult, len(results))
		for c := range results {
			row[c] = results[c][0]
		}
		return summarize(row, job.Duration), nil
	}
	res := sidesOf(results, serverCPU, job.Warmup, job.Duration)
	if job.RawSlice > 0 {
		res.RawServerBusy = rawServerCPU / (time.Duration(len(res.Pairs)) * (job.RawSlice - job.RawSettle)).Seconds()
	}
	return res, nil
}

// sidesOf is an interleaved load's result: the row's side, with the floor's as
// its Floor, each over its half of the measured window, and each side's server
// CPU (sideCPU) scaled to the whole run, as a load alone reads it.
func sidesOf(results [][2]workerResult, serverCPU [2]float64, warmup, duration time.Duration) loadResult {
	var side [2]loadResult
	for s := range side {
		workers := make([]workerResult, len(results))
		for c := range results {
			workers[c] = results[c][s]
		}
		side[s] = summarize(workers, duration/2)
		side[s].ServerCPU = serverCPU[s] * (warmup + duration).Seconds() / (duration / 2).Seconds()
	}
	if slices := len(results[0][0].perSlice); slices > 0 { // results: one per connection, at least one
		side[0].Pairs = pairRates(results, duration/time.Duration(slices))
	}
	side[0].Floor = &side[1]
	return side[0]
}

// togetherOf is a Together load's result (results: the row's connections, then
// the floor's): the row's side, with the floor's as its Floor, each over the
// whole measured window, with its server's CPU over it (windowCPU, by window)
// scaled to the whole run as a load alone reads it; Pairs holds each window's
// two rates per CPU-second of their servers.
func togetherOf(results [][2]workerResult, connections int, windowCPU [][2]float64, warmup, duration time.Duration) loadResult {
	var side [2]loadResult
	var count [2][]int
	var cpu [2]float64
	for s := range side {
		var workers []workerResult
		count[s] = make([]int, len(windowCPU))
		for _, r := range results[s*connections : (s+1)*connections] {
			workers = append(workers, r[s])
			for k, n := range r[s].perSlice[:len(windowCPU)] {
				count[s][k] += n
			}
		}
		side[s] = summarize(workers, duration)
		for _, window := range windowCPU {
			cpu[s] += window[s]
		}
		side[s].ServerCPU = cpu[s] * (warmup + duration).Seconds() / duration.Seconds()
	}
	for k, window := range windowCPU {
		var rates [3]float64
		for s := range 2 {
			rates[s] = float64(count[s][k]) / window[s] // > 0: togetherCPU
		}
		side[0].Pairs = append(side[0].Pairs, rates)
	}
	side[0].Floor = &side[1]
	return side[0]
}

// togetherCPU reads both servers' CPU (pids) at each boundary of n windows
// of slice from from: what each used in each window. A reading that fails, or
// a window in which a server used no CPU, is an error: a server that stopped
// answering, or a CPU clock this machine does not give.
func togetherCPU(from time.Time, slice time.Duration, n int, pids [2]int) ([][2]float64, error) {
	read := func() (cpu [2]float64, err error) {
		for s, pid := range pids {
			if cpu[s], err = processCPUSeconds(pid); err != nil {
				return cpu, err
			}
		}
		return cpu, nil
	}
	time.Sleep(time.Until(from))
	last, err := read()
	if err != nil {
		return nil, err
	}
	windows := make([][2]float64, n)
	for k := range windows {
		time.Sleep(time.Until(from.Add(time.Duration(k+1) * slice)))
		now, err := read()
		if err != nil {
			return nil, err
		}
		for s := range pids {
			if windows[k][s] = now[s] - last[s]; windows[k][s] <= 0 {
				return nil, fmt.Errorf("server %d used no CPU in window %d of a load of both sides together", pids[s], k)
			}
		}
		last = now
	}
	return windows, nil
}

// pairRates is each pair of slices' two rates, the row's and the floor's, from
// the workers' successes by the slice they were sent in (the raw work's, third,
// is left 0: `bench work` measures it).
func pairRates(results [][2]workerResult, slice time.Duration) [][3]float64 {
	var count [2][]int
	for s := range count {
		count[s] = make([]int, len(results[0][s].perSlice))
		for c := range results {
			for k, n := range results[c][s].perSlice {
				count[s][k] += n
			}
		}
	}
	var pairs [][3]float64
	for k := 0; k+1 < len(count[0]); k += 2 {
		var rates [3]float64
		for _, in := range []int{k, k + 1} {
			side := sideOfSlice(int64(in))
			rates[side] = float64(count[side][in]) / slice.Seconds()
		}
		pairs = append(pairs, rates)
	}
	return pairs
}

// sideCPU reads the servers' CPU at each slice's beginning and end over the
// measured window (sched, to end) and sums, by side (0 for the row's slices, 1
// for the floor's), the CPU of that side's server (serverPID, or floorServerPID
// for the floor when set) in them; and, in the measured part of the raw slices,
// the CPU of the row's server, which the raw work then shares the core with (raw).
func sideCPU(sched schedule, serverPID, floorServerPID int, end time.Time) (sides [2]float64, raw float64) {
	pids := [2]int{serverPID, serverPID}
	if floorServerPID > 0 {
		pids[1] = floorServerPID
	}
	within := func(pid int, begin, end time.Time) float64 {
		time.Sleep(time.Until(begin))
		before := cpuSeconds(pid)
		time.Sleep(time.Until(end))
		return cpuSeconds(pid) - before
	}
	for k := int64(0); ; k++ {
		begin, sliceEnd := sched.slice(k)
		if sliceEnd.After(end) {
			return sides, raw
		}
		side := sideOfSlice(k)
		sides[side] += within(pids[side], begin, sliceEnd)
		if k&1 == 1 && sched.Raw > 0 {
			rawBegin, rawEnd := sched.rawMeasured(k >> 1)
			raw += within(serverPID, rawBegin, rawEnd)
		}
	}
}

// workerResult is what one connection (or stream) of a load measured.
type workerResult struct {
	latencies []time.Duration
	perSlice  []int // an interleaved load's successes by the slice they were sent in (the side's slices only)
	errors    int
	firstErr  error
}

// prepare readies r for a load of duration, interleaved in slices of slice (0: not).
func (r *workerResult) prepare(slice, duration time.Duration) {
	r.latencies = make([]time.Duration, 0, 1<<16)
	if slice > 0 {
		r.perSlice = make([]int, duration/slice)
	}
}

// succeeded counts a success that took latency, sent in slice k of an
// interleaved load (negative: in the warm-up, or not interleaved: in no slice).
func (r *workerResult) succeeded(latency time.Duration, k int64) {
	r.latencies = append(r.latencies, latency)
	if k >= 0 && k < int64(len(r.perSlice)) {
		r.perSlice[k]++
	}
}

func (r *workerResult) fail(err error) {
	r.errors++
	if r.firstErr == nil {
		r.firstErr = err
	}
}

// summarize merges the workers' results over a measured window of d.
func summarize(results []workerResult, d time.Duration) loadResult {
	var all []time.Duration
	res := loadResult{Seconds: d.Seconds()}
	for _, r := range results {
		all = append(all, r.latencies...)
		res.Errors += r.errors
		if r.firstErr != nil && res.FirstError == "" {
			res.FirstError = r.firstErr.Error()
		}
	}
	res.Requests = len(all)
	res.Rate = float64(len(all)) / d.Seconds()
	if len(all) > 0 {
		slices.Sort(all)
		res.P50, res.P99, res.Max = percentile(all, 0.50), percentile(all, 0.99), all[len(all)-1]
	}
	res.CPUSeconds = selfCPUSeconds()
	return res
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// workJob is `bench work`: an endpoint's unavoidable work (a signature, two
// SHA-256) done raw in a tight loop on the server core, one goroutine, for
// Duration: the raw reference the rows' targets combine with their floor. With
// a Schedule, it is done in the raw slices of the first Pairs periods instead,
// in which an interleaved load (loadJob.RawSlice) sends nothing, and timed in
// their measured part (schedule.rawMeasured).
type workJob struct {
	Work     serve.FloorWork
	Duration time.Duration
	Schedule *schedule `json:",omitempty"`
	Pairs    int       `json:",omitempty"`
}

type workResult struct {
	Count   int       // times the work was done
	Rate    float64   // per second
	PerPair []float64 `json:",omitempty"` // with a Schedule: the rate in each period's raw slice
	// PerCPUSecond is the rate per second of the work process's own CPU, without
	// a Schedule: what a row measured per CPU-second of its server (together)
	// combines with; a core the work shared with anything else reads as a lower
	// Rate, not as a lower PerCPUSecond.
	PerCPUSecond float64 `json:",omitempty"`
}

// perCPU is PerCPUSecond, or Rate where it was not measured.
func (w workResult) perCPU() float64 {
	if w.PerCPUSecond > 0 {
		return w.PerCPUSecond
	}
	return w.Rate
}

func runWork(job workJob) (workResult, error) {
	work, err := job.Work.Prepare()
	if err != nil {
		return workResult{}, err
	}
	batch, err := warmUp(work)
	if err != nil {
		return workResult{}, err
	}
	if job.Schedule == nil {
		cpuBefore, err := processCPUSeconds(os.Getpid())
		if err != nil {
			return workResult{}, err
		}
		n, took, err := workUntil(work, batch, time.Now().Add(job.Duration))
		if err != nil {
			return workResult{}, err
		}
		cpuAfter, err := processCPUSeconds(os.Getpid())
		if err != nil {
			return workResult{}, err
		}
		return workResult{Count: n, Rate: perSecond(n, took), PerCPUSecond: float64(n) / (cpuAfter - cpuBefore)}, nil
	}
	return workInRawSlices(work, batch, *job.Schedule, job.Pairs)
}

// workInRawSlices does work in the raw slices of sched's first pairs periods,
// batch times between two clock reads, timed in their measured part.
func workInRawSlices(work func() error, batch int, sched schedule, pairs int) (workResult, error) {
	// Ready before the load's warm-up ends, or the work's own warm-up (a key
	// to make, a hundred signatures) would take from the load's first slice.
	if late := time.Since(sched.From); late > 0 {
		return workResult{}, fmt.Errorf("the raw work was ready %v after the load's warm-up ended", late)
	}
	var res workResult
	var total time.Duration
	for p := range int64(pairs) {
		begin, _ := sched.rawSlice(p)
		measured, end := sched.rawMeasured(p)
		time.Sleep(time.Until(begin))
		if _, _, err := workUntil(work, batch, measured); err != nil { // untimed: the server's last answers share the core
			return res, err
		}
		n, took, err := workUntil(work, batch, end)
		if err != nil {
			return res, err
		}
		if n == 0 {
			return res, fmt.Errorf("the raw work missed raw slice %d (it began %v late)", p, time.Since(measured))
		}
		res.Count, total = res.Count+n, total+took
		res.PerPair = append(res.PerPair, perSecond(n, took))
	}
	res.Rate = perSecond(res.Count, total)
	return res, nil
}

// perSecond is n over d, or 0 for no time.
func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// warmUp does work a hundred times and returns how many times to do it
// between two clock reads: about 20 µs' worth, so that neither the clock
// (~70 ns here, more than a third of a SHA-256 pair) nor a batch's overrun
// of a slice's end counts.
func warmUp(work func() error) (batch int, err error) {
	const n = 100
	start := time.Now()
	for range n {
		if err := work(); err != nil {
			return 0, err
		}
	}
	perCall := time.Since(start) / n
	return max(1, int(20*time.Microsecond/max(perCall, 1))), nil
}

// workUntil does work in batches until end, and stops before a batch that
// would end past it (by the last batch's time), and returns how many times it
// did it in how long.
func workUntil(work func() error, batch int, end time.Time) (n int, took time.Duration, err error) {
	start := time.Now()
	now, last := start, time.Duration(0)
	for now.Add(last).Before(end) {
		for range batch {
			if err := work(); err != nil {
				return n, now.Sub(start), err
			}
		}
		n += batch
		next := time.Now()
		now, last = next, next.Sub(now)
	}
	return n, now.Sub(start), nil
}

// tokenSigningBytes is the size of a real token's signing input (header.claims,
// base64url): ~450 bytes.
const tokenSigningBytes = 450

// signWork is a token endpoint's unavoidable work: one signature of a token's size.
func signWork(alg string) serve.FloorWork {
	return serve.FloorWork{Sign: alg, SignBytes: tokenSigningBytes}
}

// childMain runs `bench load`, `bench work`, `bench list`, `bench grpcload`, `bench check` or
// `bench verify` (authz.go): a job from stdin, a result to stdout.
func childMain(kind string) error {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var result any
	switch kind {
	case "load":
		var job loadJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runLoad(job)
	case "work":
		var job workJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runWork(job)
	case "list":
		var job listJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runList(job)
	case "grpcload":
		var job grpcJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runGRPCLoad(job)
	case "check":
		var job checkJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runCheck(job)
	case "verify":
		var job verifyJob
		if err := json.Unmarshal(input, &job); err != nil {
			return err
		}
		result, err = runVerify(job)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(result)
}
