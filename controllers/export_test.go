package controllers

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

var (
	testRecordsMu sync.Mutex
	testRecords   = map[cache.Cache]*secretRecords{}
)

// CachedSecret is what the manager's cache c holds of the Secret named key, as
// text (a secretRecord), for the specs that check it; "" when it holds nothing.
func CachedSecret(ctx context.Context, c cache.Cache, key types.NamespacedName) (string, error) {
	testRecordsMu.Lock()
	secrets, ok := testRecords[c]
	if !ok {
		var err error
		if secrets, err = newSecretRecords(ctx, c); err != nil {
			testRecordsMu.Unlock()
			return "", err
		}
		testRecords[c] = secrets
	}
	testRecordsMu.Unlock()
	if !toolscache.WaitForCacheSync(ctx.Done(), secrets.handler.HasSynced) {
		return "", ctx.Err()
	}
	record := secrets.get(key)
	if record == nil {
		return "", nil
	}
	return fmt.Sprintf("%+v", *record), nil
}
