package main

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/latchkey-dev/latchkey/internal/serve"
)

// An interleaved load sends the row's requests in one slice of each pair and
// the floor's in the other, and reports each side over its own half of the time.
func TestInterleavedLoadSplitsBySlice(t *testing.T) {
	job := loadJob{Slice: 100 * time.Millisecond, Floor: [][]byte{nil}}
	at := time.Unix(1000, 0)
	side := func(t time.Time) int { _, side := job.schedule(at).at(t); return side }
	orders := map[int]bool{}
	for pair := int64(-2); pair < 40; pair++ {
		first, second := sideOfSlice(2*pair), sideOfSlice(2*pair+1)
		if first == second {
			t.Fatalf("pair %d holds side %d twice", pair, first)
		}
		orders[first] = true
		// Each slice is [start, start+Slice), from the end of the warm-up.
		start := at.Add(time.Duration(2*pair) * job.Slice)
		if got := side(start); got != first {
			t.Errorf("side at the start of pair %d = %d, want %d", pair, got, first)
		}
		if got := side(start.Add(job.Slice - time.Nanosecond)); got != first {
			t.Errorf("side at the end of pair %d's first slice = %d, want %d", pair, got, first)
		}
		if got := side(start.Add(job.Slice)); got != second {
			t.Errorf("side in pair %d's second slice = %d, want %d", pair, got, second)
		}
	}
	if len(orders) != 2 {
		t.Error("every pair of slices begins with the same side: a period of two slices would fall on one side")
	}

	// The row's path answers after 5 ms, the floor's at once: a split that mixed
	// the sides would bring their rates together.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/row" {
			time.Sleep(5 * time.Millisecond)
			_, _ = w.Write([]byte("row"))
			return
		}
		_, _ = w.Write([]byte("floor"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	request := func(path string) []byte { return []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\n\r\n") }
	res, err := runLoad(loadJob{Addr: addr, Requests: [][]byte{request("/row")}, Connections: 2, Warmup: 100 * time.Millisecond,
		Duration: 800 * time.Millisecond, ExpectStatus: 200, ExpectBody: "row",
		Floor: [][]byte{request("/floor")}, FloorExpectBody: "floor", Slice: 100 * time.Millisecond})
	expectSplit(t, res, err)

	// A before/after pair: the floor side on a server of its own (FloorAddr).
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("other")) }))
	defer other.Close()
	otherAddr := strings.TrimPrefix(other.URL, "http://")
	res, err = runLoad(loadJob{Addr: addr, Requests: [][]byte{request("/row")}, Connections: 2, Warmup: 100 * time.Millisecond,
		Duration: 800 * time.Millisecond, ExpectStatus: 200, ExpectBody: "row",
		Floor: [][]byte{request("/row")}, FloorExpectBody: "other", Slice: 100 * time.Millisecond, FloorAddr: otherAddr})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors > 0 || res.Floor == nil || res.Floor.Rate < 3*res.Rate {
		t.Fatalf("errors %d (%s); the other server's side %v, this side %.0f/s", res.Errors, res.FirstError, res.Floor, res.Rate)
	}

	if _, err := runLoad(loadJob{Addr: addr, Requests: [][]byte{request("/row")}, Connections: 1, Duration: 250 * time.Millisecond,
		ExpectStatus: 200, Floor: [][]byte{request("/floor")}, Slice: 100 * time.Millisecond}); err == nil {
		t.Error("an interleaved load of a duration that is not whole slice pairs ran")
	}

	// A load alone, without a warm-up (the last-use load's), measures from its start.
	alone, err := runLoad(loadJob{Addr: addr, Requests: [][]byte{request("/floor")}, Connections: 1, Duration: 100 * time.Millisecond,
		ExpectStatus: 200, ExpectBody: "floor"})
	if err != nil || alone.Requests == 0 || alone.Floor != nil {
		t.Errorf("a load without a warm-up: %+v, %v", alone, err)
	}
	// One that starts after the moment its warm-up was to end has lost slices: an error.
	if _, err := runLoad(loadJob{Addr: addr, Requests: [][]byte{request("/row")}, Connections: 1, Duration: 200 * time.Millisecond,
		ExpectStatus: 200, Floor: [][]byte{request("/floor")}, Slice: 100 * time.Millisecond,
		Start: time.Now().Add(-time.Second), Warmup: 500 * time.Millisecond}); err == nil {
		t.Error("a load that started after its warm-up was to end ran")
	}
}

// A load of both sides together (Together) sends the floor's requests on
// connections of its own to the other server at the same time as the row's,
// measures each side over the whole window, and gives each window's rates
// per CPU-second of each side's server.
func TestTogetherLoadRunsBothSidesAtOnce(t *testing.T) {
	row := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		_, _ = w.Write([]byte("row"))
	}))
	defer row.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("other")) }))
	defer other.Close()
	addr, otherAddr := strings.TrimPrefix(row.URL, "http://"), strings.TrimPrefix(other.URL, "http://")
	request := []byte("GET /row HTTP/1.1\r\nHost: x\r\n\r\n")
	// Both servers are this process: the test checks the sides, not the CPU split.
	job := loadJob{Addr: addr, Requests: [][]byte{request}, Connections: 2, Warmup: 100 * time.Millisecond,
		Duration: 800 * time.Millisecond, ExpectStatus: 200, ExpectBody: "row", Slice: 100 * time.Millisecond,
		Floor: [][]byte{request}, FloorExpectBody: "other", FloorAddr: otherAddr,
		ServerPID: os.Getpid(), FloorServerPID: os.Getpid(), Together: true}
	res, err := runLoad(job)
	if err != nil {
		t.Fatal(err)
	}
	// A request sent to the wrong server gets the wrong body: an error.
	if res.Errors > 0 || res.Floor == nil || res.Floor.Errors > 0 {
		t.Fatalf("errors %d (%s), floor side %+v", res.Errors, res.FirstError, res.Floor)
	}
	// Each side over the whole 0.8 s; two connections of 5 ms: at most 400 row answers a second.
	if res.Seconds != 0.8 || res.Floor.Seconds != 0.8 || res.Rate < 100 || res.Rate > 450 || res.Floor.Rate < 3*res.Rate {
		t.Errorf("row side %.0f/s over %.1f s, floor side %.0f/s over %.1f s", res.Rate, res.Seconds, res.Floor.Rate, res.Floor.Seconds)
	}
	if res.ServerCPU <= 0 || res.Floor.ServerCPU <= 0 {
		t.Errorf("servers' CPU not read: %.3f, %.3f", res.ServerCPU, res.Floor.ServerCPU)
	}
	// Both sides in every window (alternate slices would leave one side empty in
	// each), each per CPU-second of the same process here: the floor's answers
	// outnumber the row's in every window.
	if len(res.Pairs) != 8 {
		t.Fatalf("%d windows, want 8: %v", len(res.Pairs), res.Pairs)
	}
	for i, pair := range res.Pairs {
		if pair[0] <= 0 || pair[1] < 3*pair[0] {
			t.Errorf("window %d: row side %.0f, floor side %.0f per CPU-second", i, pair[0], pair[1])
		}
	}

	job.FloorAddr = ""
	if _, err := runLoad(job); err == nil {
		t.Error("a load of both sides together without a server for the floor ran")
	}
}

// togetherOf reads each side per CPU-second of its own server: over the whole
// window (perServerCPU) and in each window (Pairs), each side's answers over
// its own server's CPU, never the other's.
func TestTogetherOfPerCPUSecond(t *testing.T) {
	worker := func(perSlice ...int) workerResult {
		r := workerResult{perSlice: perSlice}
		for _, n := range perSlice {
			for range n {
				r.latencies = append(r.latencies, time.Millisecond)
			}
		}
		return r
	}
	// Two connections a side: the row's first, its answers in side 0; the floor's in side 1.
	results := [][2]workerResult{
		{worker(100, 200), {}}, {worker(100, 200), {}},
		{{}, worker(300, 100)}, {{}, worker(300, 100)},
	}
	windowCPU := [][2]float64{{0.5, 0.5}, {1.0, 0.25}} // windows of 1 s: the row's server 1.5 CPU-seconds, the floor's 0.75
	res := togetherOf(results, 2, windowCPU, time.Second, 2*time.Second)
	if res.Floor == nil || res.Requests != 600 || res.Floor.Requests != 800 || res.Rate != 300 || res.Floor.Rate != 400 {
		t.Fatalf("row %d answers at %.0f/s, floor %+v", res.Requests, res.Rate, res.Floor)
	}
	window := 3 * time.Second // warm-up and measured time
	if got := res.perServerCPU(window); math.Abs(got-600/1.5) > 1e-9 {
		t.Errorf("the row per CPU-second of its server: %f, want 400", got)
	}
	if got := res.Floor.perServerCPU(window); math.Abs(got-800/0.75) > 1e-9 {
		t.Errorf("the floor per CPU-second of its server: %f, want 1066.7", got)
	}
	want := [][3]float64{{200 / 0.5, 600 / 0.5, 0}, {400 / 1.0, 200 / 0.25, 0}}
	if !slices.Equal(res.Pairs, want) {
		t.Errorf("windows per CPU-second: %v, want %v", res.Pairs, want)
	}
}

// expectSplit checks an interleaved load of 0.8 s in 0.1 s slices whose row
// side answers after 5 ms on two connections (or streams) and whose floor side
// answers at once: each side over its own half of the time, and a split that
// mixed the sides would bring their rates together.
func expectSplit(t *testing.T, res loadResult, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors > 0 || res.Floor == nil {
		t.Fatalf("errors %d (%s), floor side %v", res.Errors, res.FirstError, res.Floor)
	}
	// Two connections, 5 ms each: at most 400 row answers a second, over half of 0.8 s.
	if res.Rate > 450 || res.Seconds != 0.4 || res.Floor.Seconds != 0.4 {
		t.Errorf("row side: %.0f/s over %.1f s; floor side over %.1f s", res.Rate, res.Seconds, res.Floor.Seconds)
	}
	if res.Floor.Rate < 3*res.Rate {
		t.Errorf("floor side %.0f/s, row side %.0f/s: the floor should be several times faster", res.Floor.Rate, res.Rate)
	}
	// Each of the four pairs of slices holds the same split.
	if len(res.Pairs) != 4 {
		t.Fatalf("%d pairs of slices, want 4: %v", len(res.Pairs), res.Pairs)
	}
	for i, pair := range res.Pairs {
		if pair[0] == 0 || pair[0] > 450 || pair[1] < 3*pair[0] {
			t.Errorf("pair %d: row side %.0f/s, floor side %.0f/s", i, pair[0], pair[1])
		}
	}
}

// slowCheck answers OK after 5 ms.
type slowCheck struct{ noopCheck }

func (s slowCheck) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	time.Sleep(5 * time.Millisecond)
	return s.noopCheck.Check(ctx, r)
}

// An interleaved gRPC load (a row and its floor on two servers, as the API-key
// Check and the no-op Check server) splits the same way as an HTTP one.
func TestInterleavedGRPCLoad(t *testing.T) {
	serve := func(s authv3.AuthorizationServer) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer()
		authv3.RegisterAuthorizationServer(g, s)
		go func() { _ = g.Serve(l) }()
		t.Cleanup(g.Stop)
		return l.Addr().String()
	}
	row, floor := serve(slowCheck{}), serve(noopCheck{})
	check, err := proto.Marshal(&authv3.CheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := runGRPCLoad(grpcJob{Addr: row, Checks: [][]byte{check}, Streams: 2, Warmup: 100 * time.Millisecond,
		Duration: 800 * time.Millisecond, Slice: 100 * time.Millisecond, FloorAddr: floor})
	expectSplit(t, res, err)

	alone, err := runGRPCLoad(grpcJob{Addr: row, Checks: [][]byte{check}, Streams: 2, Duration: 200 * time.Millisecond})
	if err != nil || alone.Floor != nil || alone.Errors > 0 || alone.Rate > 450 {
		t.Errorf("a load alone: %+v, %v", alone, err)
	}
	if _, err := runGRPCLoad(grpcJob{Addr: row, Checks: [][]byte{check}, Streams: 1, Duration: 250 * time.Millisecond,
		Slice: 100 * time.Millisecond, FloorAddr: floor}); err == nil {
		t.Error("an interleaved load of a duration that is not whole slice pairs ran")
	}
}

// With raw slices, each period is a pair of slices and a raw slice after it:
// at, slice and rawSlice agree on where each begins and ends, the warm-up's
// periods included.
func TestScheduleWithRawSlices(t *testing.T) {
	s := schedule{From: time.Unix(1000, 0), Slice: 100 * time.Millisecond, Raw: 30 * time.Millisecond}
	for p := int64(-2); p < 6; p++ {
		for k := 2 * p; k < 2*p+2; k++ {
			begin, end := s.slice(k)
			if want := s.From.Add(time.Duration(p)*230*time.Millisecond + time.Duration(k-2*p)*s.Slice); !begin.Equal(want) || end.Sub(begin) != s.Slice {
				t.Fatalf("slice %d: [%v, %v), want it to begin at %v", k, begin, end, want)
			}
			for _, at := range []time.Time{begin, end.Add(-time.Nanosecond)} {
				if gotK, side := s.at(at); gotK != k || side != sideOfSlice(k) {
					t.Errorf("at %v: slice %d side %d, want slice %d side %d", at.Sub(s.From), gotK, side, k, sideOfSlice(k))
				}
			}
		}
		begin, end := s.rawSlice(p)
		if _, pairEnd := s.slice(2*p + 1); !begin.Equal(pairEnd) || end.Sub(begin) != s.Raw {
			t.Fatalf("raw slice of period %d: [%v, %v), the pair ends at %v", p, begin, end, pairEnd)
		}
		for _, at := range []time.Time{begin, end.Add(-time.Nanosecond)} {
			if gotP, side := s.at(at); gotP != p || side != sideRaw {
				t.Errorf("at %v: %d side %d, want period %d's raw slice", at.Sub(s.From), gotP, side, p)
			}
		}
	}
}

// An interleaved load with raw slices sends nothing in them, `bench work` with
// the same schedule works in them only, once per pair, timed after their
// settling time, and the server's CPU is read in that time.
func TestRawSlicesAreLeftToTheWork(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	request := []byte("GET / HTTP/1.1\r\nHost: " + addr + "\r\n\r\n")
	job := loadJob{Addr: addr, Requests: [][]byte{request}, Connections: 2, Warmup: 100 * time.Millisecond,
		Duration: 400 * time.Millisecond, ExpectStatus: 200, ExpectBody: "ok",
		Floor: [][]byte{request}, FloorExpectBody: "ok", Slice: 50 * time.Millisecond,
		RawSlice: 300 * time.Millisecond, RawSettle: 50 * time.Millisecond, Start: time.Now().Add(50 * time.Millisecond),
		ServerPID: os.Getpid()} // the work below runs in this process: it is the "server" busy in the raw slices
	sched := job.schedule(job.Start.Add(job.Warmup))
	var work workResult
	var workErr error
	var workDone time.Time
	var wg sync.WaitGroup
	wg.Go(func() {
		work, workErr = runWork(workJob{Work: serve.FloorWork{Hash: []int{64, 40}}, Schedule: &sched, Pairs: 4})
		workDone = time.Now()
	})
	res, err := runLoad(job)
	wg.Wait()
	if err != nil || workErr != nil || res.Errors > 0 {
		t.Fatalf("load: %v, %d errors (%s); work: %v", err, res.Errors, res.FirstError, workErr)
	}
	if len(res.Pairs) != 4 || len(work.PerPair) != 4 || work.Rate <= 0 {
		t.Fatalf("%d pairs of slices, the work in %d raw slices at %.0f/s", len(res.Pairs), len(work.PerPair), work.Rate)
	}
	if took := time.Since(job.Start); took < job.Warmup+4*sched.period() {
		t.Errorf("the load and the work were over after %v, before their last raw slice ended", took)
	}
	if _, lastEnd := sched.rawSlice(3); workDone.After(lastEnd.Add(100 * time.Millisecond)) {
		t.Errorf("the work went on %v past its last raw slice", workDone.Sub(lastEnd))
	}
	// Timed only in the measured part of each raw slice, 4 × 250 ms (each may
	// begin a batch early: the untimed part stops before a batch would cross it).
	if timed := time.Duration(float64(work.Count) / work.Rate * float64(time.Second)); timed > 4*260*time.Millisecond || timed < 4*200*time.Millisecond {
		t.Errorf("the work was timed for %v, want about 4 × 250 ms", timed)
	}
	if res.RawServerBusy <= 0 {
		t.Errorf("the server's CPU in the raw slices was not read (busy %.2f)", res.RawServerBusy)
	}
	// A request sent just before a raw slice may reach the server just after it
	// begins; none in the rest of it.
	for p := range int64(5) { // the warm-up's last period, -1, too
		begin, end := sched.rawSlice(p - 1)
		for _, at := range arrivals {
			if at.After(begin.Add(100*time.Millisecond)) && at.Before(end) {
				t.Errorf("a request reached the server %v into period %d's raw slice", at.Sub(begin), p-1)
			}
		}
	}
}

// The work is done in the raw slices only: none of it in the row's and the
// floor's slices, nor in the load's warm-up.
func TestWorkInRawSlicesOnly(t *testing.T) {
	sched := schedule{From: time.Now().Add(100 * time.Millisecond), Slice: 50 * time.Millisecond, Raw: 60 * time.Millisecond, Settle: 20 * time.Millisecond}
	var calls []time.Time
	work := func() error {
		calls = append(calls, time.Now())
		time.Sleep(time.Millisecond)
		return nil
	}
	res, err := workInRawSlices(work, 1, sched, 3)
	if err != nil || len(res.PerPair) != 3 || res.Count == 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	for _, at := range calls {
		in := false
		for p := range int64(3) {
			begin, end := sched.rawSlice(p)
			// A call decided on before the end may be delayed past it by this
			// busy machine's scheduler: 10 ms of the next 50 ms slice.
			in = in || !at.Before(begin) && at.Before(end.Add(10*time.Millisecond))
		}
		if !in {
			t.Errorf("work done %v after the warm-up ended, outside the raw slices", at.Sub(sched.From))
		}
	}
	// Timed in the measured parts only: 3 × 40 ms, calls of 1 ms or more.
	if res.Count > 3*41 {
		t.Errorf("%d calls timed of %d", res.Count, len(calls))
	}
	late := schedule{From: time.Now().Add(-time.Millisecond), Slice: sched.Slice, Raw: sched.Raw}
	if _, err := workInRawSlices(work, 1, late, 1); err == nil {
		t.Error("work ready after the load's warm-up ended ran anyway")
	}
}

// The raw work alone is also read per second of its own CPU, in seconds (not
// ticks or nanoseconds). Bounds that hold however busy the machine is (a busy
// machine only stretches the wall clock, so the rate per second may be any
// fraction of the rate per CPU-second): work on one goroutine cannot use much
// more CPU than wall time, and no SHA-256 of 104 bytes takes under 10 ns of
// CPU. A unit wrong by ticks or milliseconds misses the first by 100 times or
// more; one wrong the other way, the second.
func TestRawWorkPerCPUSecond(t *testing.T) {
	res, err := runWork(workJob{Work: serve.FloorWork{Hash: []int{64, 40}}, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.PerCPUSecond < 0.5*res.Rate || res.PerCPUSecond > 1e8 {
		t.Errorf("hashing: %.0f per CPU-second, %.0f per second", res.PerCPUSecond, res.Rate)
	}
}
