package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
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

// CachedAPIKey is the manager's cache c's entry of the APIKey named key: whether
// it is a record (apikeyrecord.go), and the APIKey it gives; and the live APIKey
// in the cache's form, to compare it with.
func CachedAPIKey(ctx context.Context, c cache.Cache, live *latchkeyv1.APIKey) (isRecord bool, cached, want *latchkeyv1.APIKey, err error) {
	informer, err := c.GetInformer(ctx, &latchkeyv1.APIKey{})
	if err != nil {
		return false, nil, nil, err
	}
	entry, exists, err := informer.(toolscache.SharedIndexInformer).GetStore().GetByKey(live.Namespace + "/" + live.Name)
	if err != nil || !exists {
		return false, nil, nil, fmt.Errorf("no cache entry for %s/%s (%v)", live.Namespace, live.Name, err)
	}
	_, isRecord = entry.(*apiKeyRecord)
	cached, _ = entry.(runtime.Object).DeepCopyObject().(*latchkeyv1.APIKey)
	want = live.DeepCopy()
	cacheForm(want)
	want.TypeMeta = apiKeyTypeMeta
	return isRecord, cached, want, nil
}
