// Package watchone keeps one named object loaded from the API server.
package watchone

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
)

// Client reads and watches objects of one kind in one namespace (a typed
// client-go interface such as CoreV1().Secrets(ns) fits).
type Client[T runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Start keeps the object name loaded: load runs on its creation and on every
// change. It reads with get and a watch on that name only, never a list, so that
// RBAC can allow exactly that object (resourceNames, verbs get and watch).
// newList returns an empty list of the kind (&corev1.SecretList{}).
func Start[T runtime.Object](ctx context.Context, c Client[T], name string, newList func() runtime.Object, load func(T)) toolscache.SharedInformer {
	byName := fields.OneTermEqualSelector("metadata.name", name).String()
	var zero T
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			list := newList()
			obj, err := c.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return list, nil
			}
			if err != nil {
				return nil, err
			}
			accessor, err := meta(obj)
			if err != nil {
				return nil, err
			}
			listMeta, err := apimeta.ListAccessor(list)
			if err != nil {
				return nil, err
			}
			listMeta.SetResourceVersion(accessor.GetResourceVersion())
			return list, apimeta.SetList(list, []runtime.Object{obj})
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = byName
			return c.Watch(ctx, opts)
		},
	}
	informer := toolscache.NewSharedInformer(lw, zero, 0)
	handle := func(obj any) {
		if typed, ok := obj.(T); ok {
			if accessor, err := meta(typed); err == nil && accessor.GetName() == name {
				load(typed)
			}
		}
	}
	_, _ = informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    handle,
		UpdateFunc: func(_, obj any) { handle(obj) },
	})
	go informer.RunWithContext(ctx)
	return informer
}

func meta(obj runtime.Object) (metav1.Object, error) {
	return apimeta.Accessor(obj)
}
