package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// CachedSecret is what the manager's cache c holds of the Secret named key, as
// text (a secretRecord), for the specs that check it; "" when it holds nothing.
func CachedSecret(ctx context.Context, c cache.Cache, key types.NamespacedName) (string, error) {
	secrets, err := secretRecordsOf(ctx, c) // the manager's own
	if err != nil {
		return "", err
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), secrets.handler.HasSynced) {
		return "", ctx.Err()
	}
	record := secrets.get(key)
	if record == nil {
		return "", nil
	}
	return fmt.Sprintf("%+v", *record), nil
}
