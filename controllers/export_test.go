package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"
)

// CachedSecret is what the manager's cache c holds of the Secret named key, as
// text (a secretRecord), for the specs that check it; "" when it holds nothing.
func CachedSecret(ctx context.Context, c cache.Cache, key types.NamespacedName) (string, error) {
	secrets, err := secretRecordsOf(ctx, c)
	if err != nil {
		return "", err
	}
	record := secrets.get(key)
	if record == nil {
		return "", nil
	}
	return fmt.Sprintf("%+v", *record), nil
}
