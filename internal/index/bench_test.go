package index

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

// BenchmarkAPIKeyEntry reports the live heap the index holds per APIKey of one
// hash: each iteration upserts 10,000 APIKeys decoded as a watch decodes them
// (strings of their own, dropped once upserted) and measures the heap after a
// GC (make bench-micro; make bench measures the token server and the
// authorizer whole).
func BenchmarkAPIKeyEntry(b *testing.B) {
	const n = 10_000
	hashes := make([]string, n)
	for i := range hashes {
		hashes[i] = credential.Hash(fmt.Sprint("lk_live_", i))
	}
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewIndex(logr.Discard())
		for i := range n {
			k := &latchkeyv1.APIKey{ObjectMeta: metav1.ObjectMeta{
				Namespace: fmt.Sprint("team-", i%10), Name: fmt.Sprintf("crm-sync-%05d", i),
				UID: types.UID(fmt.Sprintf("%08d-7d3c-4b1e-9a0f-2f6d8e4c1b5a", i)),
			}}
			k.Spec.Scopes = []string{"leads:read"}
			k.Status.Credentials = []latchkeyv1.CredentialHash{{Hash: hashes[i]}}
			x.UpsertAPIKey(k)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perKey = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		runtime.KeepAlive(x)
	}
	b.ReportMetric(perKey, "live-B/key")
}
