package main

import (
	"slices"
	"time"
)

// The fixtures of the report writer's golden test: the figures of two runs, as
// the measurements leave them in a report. Between them they reach every row and
// every section the writer prints, and each of their variants: a target met, a
// target missed, no target, a figure that could not be read ("n/a"), a section
// that is absent.

// fullRun is a full run (`make bench`) on a two-core machine; its figures are
// close to the published BENCHMARKS.md's. RS256 issuance, the reconcile at 10,000
// keys, its floor ratio, EdDSA issuance, the cold start at 100,000 keys and an
// ES256 token verified on every check miss their targets.
func fullRun() (*report, environment) {
	s := settings{size: "full", duration: 20 * time.Second, warmup: 3 * time.Second, connections: 16, grpcConnections: 4, keys: 10_000,
		memoryKeys: []int{100_000}, coldStarts: 5, revocations: 200, algorithms: []string{"RS256", "ES256", "EdDSA"},
		serverCPU: "0", loadCPU: "1", out: "BENCHMARKS.md", introspected: 1000, lastUsedKeys: 1000, lastUsedWindow: 70 * time.Second}
	r := &report{s: s, started: time.Date(2026, 11, 23, 7, 41, 12, 0, time.UTC)}
	r.tokens = []tokenRun{
		{alg: "RS256", sign: workResult{Count: 20_028, Rate: 1001.4},
			healthz: load(59_701.2, 210, 1_130, 9_920, 0, 0),
			floor:   load(38_811.0, 330, 1_610, 10_110, 0, 0),
			load:    load(888.3, 17_860, 32_740, 53_830, 0, 0),
			before:  resultOf(load(871.9, 18_100, 33_020, 54_110, 0, 0))},
		{alg: "ES256", sign: workResult{Count: 568_360, Rate: 28_418.0, PerCPUSecond: 28_530.6},
			healthz: load(58_086.4, 220, 1_150, 10_240, 0, 0),
			floor:   load(37_950.3, 340, 1_650, 10_300, 0, 0),
			load:    load(14_147.2, 1_050, 3_900, 14_830, 0, 0),
			paired:  withRaw(interleaved(load(14_581.7, 1_020, 3_610, 13_990, 22.9, 0), load(38_102.6, 330, 1_640, 10_250, 22.8, 0)), 27_504.3),
			working: resultOf(interleaved(load(14_402.2, 1_030, 3_700, 14_020, 22.9, 0), load(15_980.7, 930, 3_420, 13_610, 22.8, 0))),
			beforePair: resultOf(interleaved(load(14_212.9, 1_040, 3_880, 14_700, 22.9, 0),
				load(11_104.3, 1_300, 4_790, 15_110, 22.6, 0))),
			together: together(load(7_010.4, 2_100, 7_900, 15_600, 11.5, 0),
				load(19_080.2, 760, 3_300, 12_400, 11.5, 0)),
			togetherAA: together(load(7_020.6, 2_100, 7_880, 15_610, 11.5, 0),
				load(6_990.1, 2_110, 7_920, 15_590, 11.5, 0)),
			togetherBefore: together(load(7_120.4, 2_080, 7_810, 15_550, 11.5, 0),
				load(6_890.7, 2_140, 7_990, 15_700, 11.5, 0)),
			togetherRaw: [2]workResult{{Count: 138_900, Rate: 27_780.0, PerCPUSecond: 27_890.2},
				{Count: 139_600, Rate: 27_920.0, PerCPUSecond: 28_010.6}},
			togetherWorking: together(load(7_510.9, 2_050, 7_500, 15_200, 11.5, 0),
				load(19_120.5, 760, 3_290, 12_380, 11.5, 0)),
			togetherWorkingRaw: [2]workResult{{Count: 138_500, Rate: 27_700.0, PerCPUSecond: 27_810.4},
				{Count: 139_100, Rate: 27_820.0, PerCPUSecond: 27_930.8}}},
		{alg: "EdDSA", sign: workResult{Count: 781_140, Rate: 39_057.0},
			healthz: load(60_058.9, 210, 1_090, 9_610, 0, 0),
			floor:   load(38_402.7, 330, 1_620, 10_050, 0, 0),
			load:    load(15_950.4, 950, 2_980, 13_230, 0, 0)},
	}
	r.introspection = &introspectionRun{keys: 10_000,
		healthz: load(58_007.3, 220, 1_140, 10_020, 0, 0),
		floor:   load(39_120.5, 330, 1_600, 10_090, 0, 0),
		hash:    workResult{Count: 21_000_000, Rate: 1_050_000, PerCPUSecond: 1_054_100},
		load:    load(33_043.6, 420, 1_960, 12_410, 0, 0),
		working: resultOf(interleaved(load(32_610.4, 430, 1_990, 12_380, 22.9, 0), load(37_004.9, 380, 1_700, 10_200, 22.9, 0))),
		before:  resultOf(load(22_410.8, 530, 3_610, 12_600, 0, 0)),
		selfPair: resultOf(interleaved(load(32_870.2, 440, 2_010, 12_300, 22.9, 0),
			load(33_105.9, 430, 1_950, 12_150, 22.9, 0))),
		historyPair: resultOf(interleaved(load(31_870.2, 440, 2_010, 12_300, 22.9, 0),
			load(33_105.9, 430, 1_950, 12_150, 22.9, 0))),
		// Together, each server has half the core: 11.5 of 23 CPU-seconds.
		together: together(load(16_410.3, 880, 3_900, 14_200, 11.5, 0),
			load(19_530.8, 740, 3_350, 12_900, 11.5, 0)),
		togetherAA: together(load(16_380.6, 880, 3_910, 14_100, 11.5, 0),
			load(16_402.1, 880, 3_890, 14_050, 11.5, 0)),
		togetherBefore: together(load(17_050.2, 860, 3_700, 14_000, 11.5, 0),
			load(16_390.4, 880, 3_900, 14_100, 11.5, 0))}
	r.revocations = revocationRun{
		apiKeys:           latencies(200, 6_100*time.Microsecond, 89_650*time.Microsecond),
		clients:           latencies(200, 9_300*time.Microsecond, 65_970*time.Microsecond),
		apiKeysFromAnswer: latencies(200, 0, 41_200*time.Microsecond),
		clientsFromAnswer: latencies(200, 0, 45_800*time.Microsecond),
	}
	r.reconcile = []reconcileRun{
		{keys: 10_000, created: 23_710 * time.Millisecond, total: 62_540 * time.Millisecond,
			cpu: map[string]float64{"kube-apiserver": 82.4, "manager": 13.2, "etcd": 9.3,
				"benchmark (creates, watch)": 6.7, "token server (watching)": 2.9, "kube-controller-manager (garbage collector)": 0.4},
			metrics: map[string]float64{
				"controller_runtime_reconcile_total{apikey}":            10_000,
				"controller_runtime_reconcile_time_seconds{apikey}_sum": 499.3,
				"workqueue_queue_duration_seconds{apikey}_count":        10_000,
				"workqueue_queue_duration_seconds{apikey}_sum":          312.8,
				"rest_client_requests_total{GET}":                       2,
				"rest_client_requests_total{PATCH}":                     10_000,
				"rest_client_requests_total{POST}":                      10_000,
				"rest_client_requests_total{DELETE}":                    0, // no request: no line
				"controller_runtime_reconcile_errors_total{apikey}":     0, // not reported
			}},
		{keys: 90_000, created: 232_310 * time.Millisecond, total: 623_140 * time.Millisecond,
			cpu: map[string]float64{"kube-apiserver": 834.9, "manager": 145.4, "etcd": 96.7, "benchmark (creates, watch)": 70.0},
			metrics: map[string]float64{
				"controller_runtime_reconcile_total{apikey}":            90_000,
				"controller_runtime_reconcile_time_seconds{apikey}_sum": 4978.8,
				"rest_client_requests_total{GET}":                       29,
				"rest_client_requests_total{PATCH}":                     90_260,
				"rest_client_requests_total{POST}":                      90_000,
			}},
	}
	r.floor = &floorRun{keys: 10_000, created: 18_340 * time.Millisecond, written: 47_660 * time.Millisecond,
		total: 47_720 * time.Millisecond, cleanup: 24_020 * time.Millisecond, apiserverRSS: mebibytes(1517.7),
		concurrency: 8, qps: -1, burst: -1,
		cpu:         map[string]float64{"kube-apiserver": 64.2, "benchmark (creates, watch)": 11.8, "etcd": 7.7, "token server (watching)": 2.6},
		secretBytes: 660, statusBytes: 440, managerSecretBytes: 656, managerStatusBytes: 622}
	r.floorRounds = []floorRound{
		{floor: &floorRun{keys: 10_000, total: 44_010 * time.Millisecond}, reconcile: reconcileRun{keys: 10_000, total: 61_180 * time.Millisecond}},
		{floor: &floorRun{keys: 10_000, total: 46_290 * time.Millisecond}, reconcile: reconcileRun{keys: 10_000, total: 53_040 * time.Millisecond}},
	}
	objects := objectSizes{apiKeyJSON: 2_310, apiKeyManagedFields: 1_020, secretJSON: 1_180, secretProtobuf: 930, secretManagedFields: 410,
		managers: []string{"bench", "latchkey-manager (status)", "latchkey-tokenserver (status)"}}
	r.memory = []memoryPoint{
		{keys: 0, tokenServer: mebibytes(49.9), manager: mebibytes(57.0), apiserver: mebibytes(362.5), authzRSS: mebibytes(40.2), etcdInUse: mebibytes(2.1),
			heap: map[string]int64{"tokenServer": mebibytes(8.1), "manager": mebibytes(14.3), "apiserver": mebibytes(180.4), "authz": mebibytes(7.7)}},
		{keys: 10_000, tokenServer: mebibytes(55.0), manager: mebibytes(155.9), apiserver: mebibytes(2214.6), authzRSS: mebibytes(44.9), etcdInUse: mebibytes(61.0), managerBefore: mebibytes(98.6), managerFresh: mebibytes(31.9),
			heap: map[string]int64{"tokenServer": mebibytes(12.9), "manager": mebibytes(33.5), "apiserver": mebibytes(520.8), "authz": mebibytes(12.1)}, objects: &objects},
		{keys: 100_000, tokenServer: mebibytes(94.0), manager: mebibytes(1010.5), apiserver: mebibytes(7038.2), authzRSS: mebibytes(93.0), etcdInUse: mebibytes(598.3),
			heap: map[string]int64{"tokenServer": mebibytes(55.2), "manager": mebibytes(205.0), "apiserver": mebibytes(3_410.6), "authz": mebibytes(52.0)}, objects: &objects},
	}
	r.coldStarts = []coldStartRun{
		{keys: 10_000, times: durations(time.Millisecond, 1332.72, 724.65, 701.30, 698.12, 750.04)},
		{keys: 100_000, times: durations(time.Millisecond, 10_784.15, 11_572.43, 10_511.90)},
	}
	r.coldStartProfile = &coldStartProfile{keys: 100_000, ready: 10_867_830 * time.Microsecond,
		summary: "Duration: 10.70s, Total samples = 4040ms (37.75%)",
		cum: "Showing nodes accounting for 160ms, 3.96% of 4040ms total\n" +
			"      flat  flat%   sum%        cum   cum%\n" +
			"         0     0%     0%     3220ms 79.70%  k8s.io/client-go/tools/cache.(*Reflector).list.func1\n" +
			"      80ms  1.98%  1.98%     3210ms 79.46%  github.com/latchkey-dev/latchkey/internal/index.streamList[…]",
		flat: "Showing nodes accounting for 2240ms, 55.45% of 4040ms total\n" +
			"      flat  flat%   sum%        cum   cum%\n" +
			"     500ms 12.38% 12.38%     1380ms 34.16%  sigs.k8s.io/json/internal/golang/encoding/json.(*Decoder).readValue\n" +
			"     490ms 12.13% 24.50%      510ms 12.62%  sigs.k8s.io/json/internal/golang/encoding/json.stateInString",
		list: listResult{FirstByte: 5_643_530 * time.Microsecond, Transfer: 4_905_750 * time.Microsecond, Inflate: 610_250 * time.Microsecond,
			WireBytes: 17_302_113, Bytes: 195_140_608, Decode: 4_314_820 * time.Microsecond, Items: 100_000,
			PlainFirstByte: 5_812_040 * time.Microsecond, PlainTransfer: 9_120_330 * time.Microsecond}}
	r.lastUsed = &lastUsedRun{keys: 1000, buckets: 2, window: 70_400 * time.Millisecond,
		flags: []string{"--last-used-flush-interval=1s", "--last-used-granularity=1m"}, requests: 140_000,
		writes:  [2]reading{{value: 1018, ok: true}, {value: 1003, ok: true}},
		skipped: [2]reading{{value: 53_853, ok: true}, {value: 54_321, ok: true}},
		patches: reading{value: 2021, ok: true}, changes: 2000, modified: 2000}
	r.authz = &authzRun{identity: "the control plane's admin (config/local binds no role to latchkey-authz)",
		keys: 10_000, cycled: 750,
		healthz:      load(64_074.1, 210, 1_110, 9_860, 20.7, 18.2),
		forward:      load(34_427.5, 410, 1_740, 9_040, 22.1, 14.7),
		forwardFloor: load(39_870.2, 380, 1_510, 9_010, 22.3, 15.1),
		forwardPaired: interleaved(load(35_002.8, 400, 1_690, 8_930, 22.4, 14.9),
			load(40_131.0, 370, 1_500, 8_870, 22.5, 14.9)),
		// Together, each authorizer has half the core: 11.5 of 23 CPU-seconds.
		forwardTogether: together(load(17_810.5, 820, 3_450, 9_300, 11.5, 7.4),
			load(20_120.7, 730, 3_100, 9_100, 11.5, 7.5)),
		forwardTogetherAA: together(load(17_790.2, 820, 3_460, 9_310, 11.5, 7.4),
			load(17_842.6, 820, 3_440, 9_290, 11.5, 7.4)),
		forwardTogetherBefore: together(load(17_950.3, 810, 3_420, 9_280, 11.5, 7.4),
			load(17_610.8, 830, 3_480, 9_330, 11.5, 7.4)),
		limited: load(33_118.4, 420, 1_800, 9_120, 22.2, 14.6),
		limitedPaired: resultOf(interleaved(load(34_310.9, 410, 1_720, 9_060, 22.4, 14.8),
			load(35_140.2, 400, 1_700, 8_990, 22.4, 14.8))),
		limitedTogether: together(load(17_410.6, 830, 3_510, 9_320, 11.5, 7.4),
			load(17_880.3, 820, 3_440, 9_290, 11.5, 7.4)),
		noop:    load(17_184.2, 770, 3_430, 14_880, 15.4, 12.4),
		grpcKey: load(21_219.8, 640, 2_230, 10_170, 17.3, 13.6),
		grpcKeyPaired: interleaved(load(20_377.4, 660, 2_310, 10_410, 17.6, 13.9),
			load(17_601.9, 760, 3_380, 14_020, 15.8, 12.6)),
		grpcBeforePair: resultOf(interleaved(load(20_918.0, 650, 2_290, 10_300, 17.5, 13.8),
			load(20_507.3, 660, 2_330, 10_550, 17.4, 13.7))),
		jwt: []jwtRun{
			{alg: "ES256", verify: verifyResult{Verifications: 273_103, Rate: 13_655.1},
				load:     load(22_138.0, 580, 2_500, 10_690, 19.8, 16.3),
				uncached: load(4_444.6, 3_210, 7_830, 14_530, 22.5, 7.4)},
			{alg: "EdDSA", verify: verifyResult{Verifications: 375_042, Rate: 18_752.1},
				load:     load(21_462.3, 610, 2_440, 12_480, 19.8, 16.8),
				uncached: load(7_106.9, 2_040, 5_550, 15_080, 22.5, 8.3)},
		},
		revocations:         latencies(200, 0, 48_790*time.Microsecond),
		revocationsFromSend: latencies(200, 8_200*time.Microsecond, 151_020*time.Microsecond),
		before: map[string]loadResult{"authz-forward-apikey": load(30_102.3, 450, 2_010, 9_800, 22.0, 14.1),
			"authz-grpc-ES256-uncached": load(6_101.9, 2_300, 6_010, 14_900, 22.5, 7.1)},
	}
	r.beforeName = "0892f01"
	r.s.before, r.s.profileDir = "/tmp/latchkey-bench-1/latchkey-0892f01", "bin/bench-profiles"
	r.profiles = []profileTop{{file: "authz-forward-apikey", row: "8. forward-auth API-key check",
		cpu: "Duration: 23.1s, Total samples = 21.9s (94.81%)\nShowing nodes accounting for 9.1s, 41.55% of 21.9s total\n" +
			"      flat  flat%   sum%        cum   cum%\n     2.10s  9.59%  9.59%      2.10s  9.59%  internal/runtime/syscall.Syscall6",
		allocs: "Showing nodes accounting for 3.2GB, 88.1% of 3.6GB total\n      flat  flat%   sum%        cum   cum%\n" +
			"    1.1GB 30.56% 30.56%     1.1GB 30.56%  net/textproto.readMIMEHeader"}}
	env := environment{command: "make bench", finished: r.started.Add(24*time.Minute + 55*time.Second + 400*time.Millisecond),
		cpu: "AMD EPYC", cores: 2, goVersion: "go1.26.8 linux/amd64", kernel: "Linux 6.18.44-fc-v669", commit: "c5eb35c"}
	return r, env
}

// partialRun is a quick run of some steps (`make bench-quick BENCH_FLAGS=…`)
// against an older build, where several figures are missing: one algorithm, no
// revocation of OAuthClients, no manager metrics, a kube-apiserver whose memory
// could not be read, a LIST split that failed and no startup profile, last-use
// counters that one replica did not expose, an authorizer without token loads.
// Every count is off its target's, so no target applies to the reconcile, the
// floor and the cold start; EdDSA issuance, introspection, the revocation, the
// manager's memory, the forward-auth check and the gRPC Check miss theirs.
func partialRun() (*report, environment) {
	s := settings{size: "quick", duration: 5 * time.Second, warmup: time.Second, connections: 16, grpcConnections: 4, keys: 2500,
		coldStarts: 3, revocations: 100, algorithms: []string{"EdDSA"}, serverCPU: "0", loadCPU: "1",
		out: "bin/BENCHMARKS.quick.md", managerArgs: []string{"--kube-api-qps=200", "--kube-api-burst=300"},
		introspected: 1000, lastUsedKeys: 200, lastUsedWindow: 10 * time.Second}
	r := &report{s: s, started: time.Date(2026, 11, 24, 18, 5, 59, 0, time.UTC)}
	r.tokens = []tokenRun{
		{alg: "EdDSA", sign: workResult{Count: 190_410, Rate: 38_082.0},
			healthz: load(55_310.7, 240, 1_310, 8_100, 0, 0),
			floor:   load(36_020.1, 350, 1_700, 9_900, 0, 0),
			load:    load(9_874.2, 1_410, 10_370, 21_000, 0, 0)},
	}
	r.introspection = &introspectionRun{keys: 2500,
		healthz: load(54_919.0, 250, 1_400, 7_960, 0, 0),
		floor:   load(36_410.3, 340, 1_690, 9_850, 0, 0),
		hash:    workResult{Count: 5_100_000, Rate: 1_020_000},
		load:    load(19_620.4, 600, 4_020, 11_300, 0, 0)}
	r.revocations = revocationRun{apiKeys: latencies(100, 7_000*time.Microsecond, 212_500*time.Microsecond),
		apiKeysFromAnswer: latencies(100, 0, 190_300*time.Microsecond)}
	r.reconcile = []reconcileRun{
		{keys: 2500, created: 6_120 * time.Millisecond, total: 15_870 * time.Millisecond,
			cpu: map[string]float64{"kube-apiserver": 21.3, "manager": 3.6, "etcd": 2.4, "benchmark (creates, watch)": 1.9}},
	}
	r.floor = &floorRun{keys: 2500, created: 4_410 * time.Millisecond, written: 14_020 * time.Millisecond,
		total: 14_110 * time.Millisecond, cleanup: 6_330 * time.Millisecond,
		concurrency: 4, qps: 200, burst: 300, secretBytes: 660, statusBytes: 440}
	r.memory = []memoryPoint{
		{keys: 0, tokenServer: mebibytes(49.7), manager: mebibytes(58.1), heap: map[string]int64{"tokenServer": mebibytes(8.0), "manager": mebibytes(14.0)}},
		{keys: 2500, tokenServer: mebibytes(54.8), manager: mebibytes(80.3), heap: map[string]int64{"tokenServer": mebibytes(9.3), "manager": mebibytes(19.6)}},
	}
	r.coldStarts = []coldStartRun{{keys: 2500, times: durations(time.Millisecond, 402.18, 388.91, 415.07)}}
	r.coldStartProfile = &coldStartProfile{keys: 2500, ready: 431_270 * time.Microsecond,
		missing: "this build's token server has no --startup-cpu-profile",
		listErr: "bench list: context deadline exceeded"}
	r.lastUsed = &lastUsedRun{keys: 200, buckets: 1, window: 10_200 * time.Millisecond,
		flags: []string{"--last-used-min-interval=1m"}, oldFlags: true, requests: 4_000,
		writes:  [2]reading{{value: 207, ok: true}, {}},
		skipped: [2]reading{{value: 1_793, ok: true}, {}},
		changes: 203, modified: 205}
	r.authz = &authzRun{identity: "latchkey-authz (config/local's roles)", keys: 2500, cycled: 300,
		healthz:      load(61_002.8, 220, 1_190, 8_930, 5.4, 4.6),
		forward:      load(30_118.4, 470, 2_160, 9_880, 5.8, 3.9),
		forwardFloor: load(41_300.9, 360, 1_480, 8_800, 5.9, 4.0),
		noop:         load(16_870.0, 790, 3_510, 13_020, 4.1, 3.3),
		grpcKey:      load(15_505.5, 860, 2_980, 9_740, 4.5, 3.5)}
	env := environment{command: "make bench-quick BENCH_FLAGS='-keys 2500 -manager-args=--kube-api-qps=200 --kube-api-burst=300'",
		finished: r.started.Add(6*time.Minute + 41*time.Second + 600*time.Millisecond),
		cpu:      "unknown", cores: 8, goVersion: "go1.26.8 linux/arm64", kernel: "unknown", commit: "c5eb35c-dirty"}
	return r, env
}

// load is a loadResult: rate per second, latencies in microseconds, and the CPU
// seconds the measured server and the load generator used.
func load(rate float64, p50, p99, max int64, serverCPU, loadCPU float64) loadResult {
	return loadResult{Rate: rate, P50: time.Duration(p50) * time.Microsecond, P99: time.Duration(p99) * time.Microsecond,
		Max: time.Duration(max) * time.Microsecond, ServerCPU: serverCPU, CPUSeconds: loadCPU}
}

// latencies are n latencies from lo to hi, skewed towards lo as measured ones
// are, in the reverse of their order (the writer sorts).
func latencies(n int, lo, hi time.Duration) []time.Duration {
	d := make([]time.Duration, n)
	last := int64(n - 1)
	for i := range d {
		x := int64(i)
		d[i] = lo + time.Duration(int64(hi-lo)/last*x/last*x/last*x)
	}
	slices.Reverse(d)
	return d
}

// durations are values in unit, in the order given.
func durations(unit time.Duration, values ...float64) []time.Duration {
	d := make([]time.Duration, len(values))
	for i, v := range values {
		d[i] = time.Duration(v * float64(unit))
	}
	return d
}

func mebibytes(m float64) int64 { return int64(m * (1 << 20)) }

func resultOf(l loadResult) *loadResult { return &l }

// together is row measured together with floor: its windows' pairs are per
// CPU-second of each server (23 s of load, warm-up included), as togetherOf makes them.
func together(row, floor loadResult) *loadResult {
	const window = 23 * time.Second
	for _, f := range []float64{0.97, 1.02, 1.01, 0.98, 1.0} {
		row.Pairs = append(row.Pairs, [3]float64{row.perServerCPU(window) * f, floor.perServerCPU(window)})
	}
	row.Floor = &floor
	return &row
}

// withRaw is paired with the raw work measured in its raw slices
// (loadJob.RawSlice) at rate, each pair's within ±3% of it.
func withRaw(paired loadResult, rate float64) loadResult {
	paired.Raw = rate
	for i, f := range []float64{1.03, 0.98, 1.0, 0.97, 1.02}[:len(paired.Pairs)] {
		paired.Pairs[i][2] = rate * f
	}
	return paired
}

// interleaved is a row's load interleaved with its floor's (loadJob.Floor), in
// five pairs of slices whose row rates spread ±4% around the whole run's.
func interleaved(row, floor loadResult) loadResult {
	for _, f := range []float64{0.96, 1.01, 1.04, 0.99, 1.0} {
		row.Pairs = append(row.Pairs, [3]float64{row.Rate * f, floor.Rate})
	}
	row.Floor = &floor
	return row
}
