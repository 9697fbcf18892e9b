package main

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the report writer's golden files in testdata/ with its current output")

// TestReportGolden renders the fixtures' reports (fixture_test.go) with a fixed
// environment and compares them, and the terminal summary, with the golden files
// in testdata/. After a deliberate change of the writer, regenerate them with
//
//	go test ./test/bench/ -run TestReportGolden -update
//
// and review their diff as a reader of BENCHMARKS.md would.
func TestReportGolden(t *testing.T) {
	for _, fixture := range []struct {
		name string
		run  func() (*report, environment)
	}{{"full", fullRun}, {"partial", partialRun}} {
		t.Run(fixture.name, func(t *testing.T) {
			r, env := fixture.run()
			golden(t, fixture.name+".md.golden", r.markdown(env))
			golden(t, fixture.name+".summary.golden", r.summary())
		})
	}
}

// TestReportFixturesCoverEveryRow keeps the fixtures honest: between them they
// print every numbered measure, a target met and missed, rows without a target,
// figures that could not be read, and every section of the details.
func TestReportFixturesCoverEveryRow(t *testing.T) {
	var rows [][]string
	var text strings.Builder
	for _, run := range []func() (*report, environment){fullRun, partialRun} {
		r, env := run()
		text.WriteString(r.markdown(env))
		rows = append(rows, r.rows...)
	}
	has := func(match func(row []string) bool) bool {
		for _, row := range rows {
			if match(row) {
				return true
			}
		}
		return false
	}
	for _, want := range []struct{ measure, met string }{
		{"1. Token issuance, RS256", "yes"},
		{"1. Token issuance, ES256", "yes"},
		{"1. Token issuance, EdDSA", "**no**"},
		{"2. API key introspection", "yes"},
		{"2. API key introspection", "**no**"},
		{"3. Revocation latency, introspection", "yes"},
		{"3. Revocation latency, introspection", "**no**"},
		{"3. Revocation latency, token endpoint", "yes"},
		{"4. Reconcile: ", "**no**"},
		{"4. Reconcile: ", "—"},
		{"4. Reconcile ÷ floor", "**no**"},
		{"4. Reconcile ÷ floor", "—"},
		{"5. Token server: heap per APIKey", "yes"},
		{"5. Authorizer: heap per APIKey", "yes"},
		{"5. Manager: heap per APIKey", "yes"},
		{"5. Manager: heap per APIKey", "**no**"},
		{"5. kube-apiserver: heap per APIKey", "—"},
		{"5. etcd: database in use", "—"},
		{"6. Token server cold start", "yes"},
		{"6. Token server cold start", "**no**"},
		{"6. Token server cold start", "—"},
		{"7. Last-use writes", "—"},
		{"8. Edge authorizer: forward-auth", "yes"},
		{"8. Edge authorizer: forward-auth", "**no**"},
		{"8. Edge authorizer: gRPC Check (ext_authz)", "yes"},
		{"8. Edge authorizer: gRPC Check (ext_authz)", "**no**"},
		{"8. Edge authorizer: gRPC Check, ES256 access token (", "—"},
		{"8. Edge authorizer: gRPC Check, ES256 access token, signature verified", "**no**"},
		{"8. Edge authorizer: gRPC Check, EdDSA access token, signature verified", "yes"},
		{"8. Edge authorizer: revocation", "yes"},
	} {
		if !has(func(row []string) bool { return strings.HasPrefix(row[0], want.measure) && row[5] == want.met }) {
			t.Errorf("no row %q… with Met %q", want.measure, want.met)
		}
	}
	if !has(func(row []string) bool { return strings.Contains(row[1], "n/a") }) {
		t.Error(`no row with a figure that could not be read ("n/a")`)
	}
	for _, section := range []string{
		"### Token endpoint", "### Reconcile run 1", "### Reconcile run 2", "| Mean time queued", "### Reconcile floor",
		"CPU seconds used during the floor", "### Memory and the scale envelope", "One APIKey and its Secret as stored",
		"#### The envelope", "#### Design note: 1,000,000 credentials", "### Before and after, same run", "### Where the time goes", "Allocations:",
		"### Where cold start goes",
		"Target < 3 s at 100,000", "measured by the full run only", "| Decoding into typed APIKeys", "The LIST split failed",
		"By own time", "No startup CPU profile", "### Last-use write budget", "This build has no `--last-used-granularity`",
		"### Edge authorizer", "Raw ES256 verification", "Revocation at the authorizer", "### Revocation\n", "| Manager flags added",
	} {
		if !strings.Contains(text.String(), section) {
			t.Errorf("the fixtures print no %q", section)
		}
	}
}

// golden compares got with testdata/name, or writes it there with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got == string(want) {
		return
	}
	gotLines, wantLines := strings.Split(got, "\n"), strings.Split(string(want), "\n")
	for i := range max(len(gotLines), len(wantLines)) {
		var g, w string
		if i < len(gotLines) {
			g = gotLines[i]
		}
		if i < len(wantLines) {
			w = wantLines[i]
		}
		if g != w {
			t.Fatalf("%s differs from the writer's output at line %d (run with -update if the change is meant):\nwant: %s\ngot:  %s", path, i+1, w, g)
		}
	}
}

// TestHeadlineRatioIsTogetherOnlyWhereItsAAHolds: a row measured together is
// judged by the together ratio only when its A/A shows the two servers alike
// (mean within ±2%, every window within ±5%); otherwise by the interleaved one,
// and the cell says why.
func TestHeadlineRatioIsTogetherOnlyWhereItsAAHolds(t *testing.T) {
	const window = 10 * time.Second
	// side: a server that answered rate requests/s on cpu seconds of CPU over
	// the window, windows the per-CPU-second rate of each of its windows.
	side := func(rate, cpu float64, windows ...float64) loadResult {
		l := loadResult{Rate: rate, ServerCPU: cpu}
		for _, w := range windows {
			l.Pairs = append(l.Pairs, [3]float64{w, 1000})
		}
		return l
	}
	pair := func(row, floor loadResult) *loadResult { row.Floor = &floor; return &row }
	// withEmptyWindow: the A/A's second server answered nothing in its last window.
	withEmptyWindow := func(aa *loadResult) *loadResult { aa.Pairs[len(aa.Pairs)-1][1] = 0; return aa }
	// The row does 800 per CPU-second, the floor 1000: 80% together.
	row := pair(side(4000, 50, 800, 800), side(5000, 50))
	raw := rawRate{} // no unavoidable work: the reference is the floor itself

	for _, c := range []struct {
		name  string
		aa    *loadResult
		ratio float64
		cell  string
	}{
		{"A/A holds", pair(side(5050, 50, 990, 1030, 1010), side(5000, 50)), 0.80,
			"80.0% together (interleaved 90.0%)"},
		{"A/A mean beyond 2%", pair(side(5150, 50, 1000, 1030), side(5000, 50)), 0.90,
			"90.0% interleaved (together 80.0% not used: the together A/A read 103.0%, beyond ±2%)"},
		{"an A/A window beyond 5%", pair(side(5000, 50, 1060, 940, 1000), side(5000, 50)), 0.90,
			"90.0% interleaved (together 80.0% not used: a together A/A window read 94.0% to 106.0%, beyond ±5%)"},
		{"A/A without windows", pair(side(5000, 50), side(5000, 50)), 0.90,
			"90.0% interleaved (together 80.0% not used: the together A/A has no windows)"},
		{"an A/A window without requests on one side", withEmptyWindow(pair(side(5000, 50, 1000, 1000), side(5000, 50))), 0.90,
			"90.0% interleaved (together 80.0% not used: a together A/A window had no requests on one side)"},
	} {
		ratio, cell := headlineRatio(0.90, "interleaved", row, c.aa, raw, window)
		if math.Abs(ratio-c.ratio) > 1e-9 || cell != c.cell {
			t.Errorf("%s: got %.3f %q, want %.3f %q", c.name, ratio, cell, c.ratio, c.cell)
		}
	}
	if ratio, cell := headlineRatio(0.90, "alone", pair(side(4000, 50, 800), side(0, 50)), row, raw, window); ratio != 0.90 ||
		cell != "90.0% alone (together not used: the together ratio is not a rate's)" {
		t.Errorf("a floor that answered nothing: got %.3f %q, want the other ratio", ratio, cell)
	}
	// Unavoidable work measured right before and after the pair: the reference
	// combines the floor with their mean (1000 ⊕ 4000 = 800 per CPU-second, the
	// row's own), unless the machine's speed moved across the pair.
	holds := pair(side(5050, 50, 990, 1030, 1010), side(5000, 50))
	steady := rawAroundOf([2]workResult{{PerCPUSecond: 3950}, {PerCPUSecond: 4050}}, workResult{Rate: 1})
	if ratio, cell := headlineRatio(0.90, "interleaved", row, holds, steady, window); math.Abs(ratio-1) > 1e-9 || cell != "100.0% together (interleaved 90.0%)" {
		t.Errorf("raw work around the pair: got %.3f %q, want the floor combined with its mean", ratio, cell)
	}
	moved := rawAroundOf([2]workResult{{PerCPUSecond: 3800}, {PerCPUSecond: 4200}}, workResult{Rate: 1})
	if ratio, cell := headlineRatio(0.90, "interleaved", row, holds, moved, window); ratio != 0.90 ||
		cell != "90.0% interleaved (together 100.0% not used: the raw work's rate moved +10.5% across the pair, beyond ±5%)" {
		t.Errorf("raw work that moved across the pair: got %.3f %q, want the interleaved ratio", ratio, cell)
	}
	if got := rawAroundOf([2]workResult{}, workResult{Rate: 900, PerCPUSecond: 950}); got.rate != 950 || got.around {
		t.Errorf("no raw work around the pair: got %+v, want the one measured alone", got)
	}
	if ratio, cell := headlineRatio(0.90, "alone", nil, nil, raw, window); ratio != 0.90 || cell != "90.0%" {
		t.Errorf("not measured together: got %.3f %q, want the other ratio alone", ratio, cell)
	}
}
