// Command kubectl-latchkey is a kubectl plugin for everyday credential operations.
// Everything it does can be done with plain kubectl or curl (see the README); it
// saves the typing and waits until the operator has acted.
//
//	kubectl latchkey rotate  apikey/NAME | oauthclient/NAME   new credential; the old one lasts its grace period
//	kubectl latchkey revoke  apikey/NAME | oauthclient/NAME   every credential stops working at once
//	kubectl latchkey restore apikey/NAME | oauthclient/NAME   issue a brand-new credential after a revocation
//	kubectl latchkey status  [apikey/NAME | oauthclient/NAME] conditions, credentials (key IDs only), last use
//	kubectl latchkey token   oauthclient/NAME                 read the client's Secret and fetch an access token
//	kubectl latchkey check-leaks [FILE|-] [-o json]            a gitleaks JSON report, down to real keys (key IDs only)
//	kubectl latchkey report-leak [-f FILE] [--url URL]         revoke leaked credentials read from stdin or FILE
//
// The exit status is 0 on success and 1 on an error, but for check-leaks: 0 when
// no finding is left, 1 when one is, 2 on an error.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/oauth2/clientcredentials"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
	"github.com/latchkey-dev/latchkey/internal/credential"
)

func main() {
	os.Exit(exitStatus(newRootCommand(context.Background(), os.Stdout).Execute(), os.Stderr))
}

type options struct {
	// config carries every kubectl connection flag (--kubeconfig, --context,
	// --namespace, --as, --as-group, --token, --server, --certificate-authority, ...),
	// which behave exactly as in kubectl (k8s.io/cli-runtime).
	config  *genericclioptions.ConfigFlags
	wait    bool
	timeout time.Duration
	// token
	tokenURL, scope, audience, output string
}

// newRootCommand builds the plugin's commands (cobra, as kubectl's own are), with
// shell completion of KIND/NAME from the cluster (`kubectl latchkey completion bash`).
func newRootCommand(ctx context.Context, out io.Writer) *cobra.Command {
	o := &options{config: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:           "kubectl-latchkey",
		Short:         "Everyday operations on Latchkey credentials",
		Long:          "kubectl latchkey: everyday operations on Latchkey credentials. KIND is apikey (ak) or oauthclient (oc).",
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl latchkey"},
	}
	root.SetOut(out)
	o.config.AddFlags(root.PersistentFlags())
	root.PersistentFlags().BoolVar(&o.wait, "wait", true, "wait until the operator has acted (rotate, revoke, restore)")
	root.PersistentFlags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait")

	// act runs fn on the one KIND/NAME argument.
	act := func(fn func(op *operator, obj credentialObject) error) func(*cobra.Command, []string) error {
		return func(_ *cobra.Command, args []string) error {
			op, err := o.operator(out)
			if err != nil {
				return err
			}
			obj, err := parseRef(args[0], op.namespace)
			if err != nil {
				return err
			}
			return fn(op, obj)
		}
	}
	complete := o.completeRefs(ctx)
	root.AddCommand(
		&cobra.Command{Use: "rotate KIND/NAME", Short: "issue a new credential; the previous one works for the grace period",
			Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: act(func(op *operator, obj credentialObject) error { return op.rotate(ctx, obj) })},
		&cobra.Command{Use: "revoke KIND/NAME", Short: "stop every credential at once (the Secret is deleted)",
			Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: act(func(op *operator, obj credentialObject) error { return op.setRevoked(ctx, obj, true) })},
		&cobra.Command{Use: "restore KIND/NAME", Short: "after a revocation, issue a brand-new credential",
			Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
			RunE: act(func(op *operator, obj credentialObject) error { return op.setRevoked(ctx, obj, false) })},
		&cobra.Command{Use: "status [KIND/NAME]", Short: "conditions, credentials (key IDs only), expiry and last use",
			Args: cobra.MaximumNArgs(1), ValidArgsFunction: complete,
			RunE: func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					op, err := o.operator(out)
					if err != nil {
						return err
					}
					return op.statusAll(ctx)
				}
				return act(func(op *operator, obj credentialObject) error { return op.status(ctx, obj) })(cmd, args)
			}},
	)
	token := &cobra.Command{Use: "token oauthclient/NAME", Short: "fetch an access token with the client's Secret (client_credentials)",
		Args: cobra.ExactArgs(1), ValidArgsFunction: complete,
		RunE: act(func(op *operator, obj credentialObject) error {
			oc, ok := obj.(*latchkeyv1.OAuthClient)
			if !ok {
				return errors.New("token works on an oauthclient")
			}
			return op.token(ctx, oc)
		})}
	token.Flags().StringVar(&o.tokenURL, "token-url", "", "the token endpoint (default: token_url in the client's Secret)")
	token.Flags().StringVar(&o.scope, "scope", "", "space-separated scopes to request (default: all of the client's)")
	token.Flags().StringVar(&o.audience, "audience", "", "the audience to request (default: the client's first)")
	token.Flags().StringVarP(&o.output, "output", "o", "", "json for the whole token response; default the access token alone")
	root.AddCommand(token)
	root.AddCommand(checkLeaksCommand(), o.reportLeakCommand(ctx))
	return root
}

// run executes the plugin with args, as the kubectl-latchkey binary would.
func run(ctx context.Context, args []string, out io.Writer) error {
	root := newRootCommand(ctx, out)
	root.SetArgs(args)
	return root.Execute()
}

// credentialObject is what the commands need of an APIKey or an OAuthClient.
type credentialObject interface {
	client.Object
	Lifecycle() *latchkeyv1.CredentialSpec
	CredentialStatus() *latchkeyv1.CredentialStatus
	SecretName() string
}

func parseRef(ref, namespace string) (credentialObject, error) {
	kind, name, ok := strings.Cut(ref, "/")
	if !ok || name == "" {
		return nil, fmt.Errorf("%q: want KIND/NAME, such as apikey/billing", ref)
	}
	meta := metav1.ObjectMeta{Namespace: namespace, Name: name}
	switch strings.ToLower(kind) {
	case "apikey", "apikeys", "ak", "apikey.latchkey.dev":
		return &latchkeyv1.APIKey{ObjectMeta: meta}, nil
	case "oauthclient", "oauthclients", "oc", "oauthclient.latchkey.dev":
		return &latchkeyv1.OAuthClient{ObjectMeta: meta}, nil
	}
	return nil, fmt.Errorf("%q: KIND is apikey (ak) or oauthclient (oc)", kind)
}

// operator connects with kubectl's flags: the REST config and the namespace come
// from ConfigFlags, as they would for kubectl itself.
func (o *options) operator(out io.Writer) (*operator, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	namespace, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := latchkeyv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return &operator{client: c, namespace: namespace, opts: *o, out: out}, nil
}

// completeRefs completes KIND/NAME from the APIKeys and OAuthClients of the namespace.
func (o *options) completeRefs(ctx context.Context) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		op, err := o.operator(io.Discard)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		var out []cobra.Completion
		var keys latchkeyv1.APIKeyList
		if op.client.List(ctx, &keys, client.InNamespace(op.namespace)) == nil {
			for _, k := range keys.Items {
				out = append(out, "apikey/"+k.Name)
			}
		}
		var clients latchkeyv1.OAuthClientList
		if op.client.List(ctx, &clients, client.InNamespace(op.namespace)) == nil {
			for _, c := range clients.Items {
				out = append(out, "oauthclient/"+c.Name)
			}
		}
		var matching []cobra.Completion
		for _, ref := range out {
			if strings.HasPrefix(ref, toComplete) {
				matching = append(matching, ref)
			}
		}
		return matching, cobra.ShellCompDirectiveNoFileComp
	}
}

type operator struct {
	client    client.Client
	namespace string
	opts      options
	out       io.Writer
}

func kindName(obj credentialObject) string {
	switch obj.(type) {
	case *latchkeyv1.APIKey:
		return "apikey/" + obj.GetName()
	default:
		return "oauthclient/" + obj.GetName()
	}
}

// rotate sets the rotate annotation to a new value, as `kubectl annotate` would.
func (op *operator) rotate(ctx context.Context, obj credentialObject) error {
	request := time.Now().UTC().Format(time.RFC3339Nano)
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{latchkeyv1.RotateAnnotation: request}}}
	if err := op.mergePatch(ctx, obj, patch); err != nil {
		return err
	}
	fmt.Fprintf(op.out, "%s: rotation requested\n", kindName(obj))
	if !op.opts.wait {
		return nil
	}
	if err := op.waitFor(ctx, obj, func() bool {
		return obj.CredentialStatus().LastRotateRequest == request && accepted(obj)
	}); err != nil {
		return err
	}
	fmt.Fprintf(op.out, "%s: new credential issued into Secret %s", kindName(obj), obj.SecretName())
	if grace := previousUntil(obj); !grace.IsZero() {
		fmt.Fprintf(op.out, "; the previous one works until %s", grace.Format(time.RFC3339))
	}
	fmt.Fprintln(op.out)
	return nil
}

func previousUntil(obj credentialObject) time.Time {
	var until time.Time
	for _, c := range obj.CredentialStatus().Credentials {
		if c.NotAfter != nil && c.NotAfter.After(until) {
			until = c.NotAfter.Time
		}
	}
	return until
}

func (op *operator) setRevoked(ctx context.Context, obj credentialObject, revoked bool) error {
	if err := op.mergePatch(ctx, obj, map[string]any{"spec": map[string]any{"revoked": revoked}}); err != nil {
		return err
	}
	verb := map[bool]string{true: "revoked", false: "restored"}[revoked]
	if op.opts.wait {
		err := op.waitFor(ctx, obj, func() bool {
			if revoked {
				return reason(obj) == latchkeyv1.ReasonRevoked
			}
			// Settled: issued, or refused and not being retried (the manager's
			// Reconciling condition says when it still is).
			return reason(obj) != latchkeyv1.ReasonRevoked &&
				!meta.IsStatusConditionTrue(obj.CredentialStatus().Conditions, latchkeyv1.ConditionReconciling)
		})
		if err != nil {
			return err
		}
		if !revoked && !accepted(obj) {
			return fmt.Errorf("%s: no longer revoked, but no credential is issued: %s", kindName(obj), describeReady(obj))
		}
	}
	fmt.Fprintf(op.out, "%s %s\n", kindName(obj), verb)
	return nil
}

func (op *operator) mergePatch(ctx context.Context, obj credentialObject, patch map[string]any) error {
	body, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return op.client.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", body))
}

// waitFor polls obj until done holds for its current generation.
func (op *operator) waitFor(ctx context.Context, obj credentialObject, done func() bool) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, op.opts.timeout, true, func(ctx context.Context) (bool, error) {
		if err := op.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, err
		}
		return obj.CredentialStatus().ObservedGeneration >= obj.GetGeneration() && done(), nil
	})
	if err != nil {
		return fmt.Errorf("%s: the operator has not acted within %s (is the manager running?): %w; Ready: %s",
			kindName(obj), op.opts.timeout, err, describeReady(obj))
	}
	return nil
}

// accepted: the object has a credential that is accepted (or, a public client,
// needs none). Ready alone does not say it: a credential revoked or expired as
// declared is Ready too.
func accepted(obj credentialObject) bool {
	switch reason(obj) {
	case latchkeyv1.ReasonIssued, latchkeyv1.ReasonRotating, latchkeyv1.ReasonRegistered:
		return meta.IsStatusConditionTrue(obj.CredentialStatus().Conditions, latchkeyv1.ConditionReady)
	}
	return false
}

func reason(obj credentialObject) string {
	if c := meta.FindStatusCondition(obj.CredentialStatus().Conditions, latchkeyv1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

func describeReady(obj credentialObject) string {
	c := meta.FindStatusCondition(obj.CredentialStatus().Conditions, latchkeyv1.ConditionReady)
	if c == nil {
		return "unknown"
	}
	return fmt.Sprintf("%s (%s: %s)", c.Status, c.Reason, c.Message)
}

func (op *operator) status(ctx context.Context, obj credentialObject) error {
	if err := op.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return err
	}
	s := obj.CredentialStatus()
	w := tabwriter.NewWriter(op.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "%s\t(namespace %s)\n", kindName(obj), obj.GetNamespace())
	fmt.Fprintf(w, "Ready:\t%s\n", describeReady(obj))
	switch o := obj.(type) {
	case *latchkeyv1.APIKey:
		fmt.Fprintf(w, "Key ID:\t%s\n", o.Status.KeyID)
		fmt.Fprintf(w, "Environment:\t%s\n", o.Spec.Environment)
		fmt.Fprintf(w, "Scopes:\t%s\n", strings.Join(o.Spec.Scopes, " "))
	case *latchkeyv1.OAuthClient:
		fmt.Fprintf(w, "Client ID:\t%s\n", o.Status.ClientID)
		fmt.Fprintf(w, "Scopes:\t%s\n", strings.Join(o.Spec.Scopes, " "))
		fmt.Fprintf(w, "Audiences:\t%s\n", strings.Join(o.Spec.Audiences, " "))
	}
	fmt.Fprintf(w, "Secret:\t%s\n", obj.SecretName())
	fmt.Fprintf(w, "Revoked:\t%t\n", obj.Lifecycle().Revoked)
	fmt.Fprintf(w, "Expires:\t%s\n", timeOr(s.ExpiresAt, "never"))
	fmt.Fprintf(w, "Last rotated:\t%s\n", timeOr(s.LastRotatedAt, "never"))
	fmt.Fprintf(w, "Last used:\t%s\n", timeOr(s.LastUsedAt, "not recorded"))
	op.rateLimits(ctx, w, obj)
	fmt.Fprintf(w, "Accepted credentials:\t%d\n", len(s.Credentials))
	for _, c := range s.Credentials {
		until := "current"
		if c.NotAfter != nil {
			until = "grace period until " + c.NotAfter.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "  %s\tserial %d, issued %s, %s\n", credential.KeyID(c.Hash), c.Serial, timeOr(&c.IssuedAt, "?"), until)
	}
	return w.Flush()
}

func (op *operator) statusAll(ctx context.Context) error {
	var keys latchkeyv1.APIKeyList
	var clients latchkeyv1.OAuthClientList
	if err := op.client.List(ctx, &keys, client.InNamespace(op.namespace)); err != nil {
		return err
	}
	if err := op.client.List(ctx, &clients, client.InNamespace(op.namespace)); err != nil {
		return err
	}
	w := tabwriter.NewWriter(op.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tREADY\tSTATE\tID\tCREDENTIALS\tEXPIRES\tLAST USED")
	row := func(obj credentialObject, id string) {
		s := obj.CredentialStatus()
		c := meta.FindStatusCondition(s.Conditions, latchkeyv1.ConditionReady)
		status, why := "Unknown", ""
		if c != nil {
			status, why = string(c.Status), c.Reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", kindName(obj), status, why, id, len(s.Credentials),
			timeOr(s.ExpiresAt, "never"), timeOr(s.LastUsedAt, "-"))
	}
	for i := range keys.Items {
		row(&keys.Items[i], keys.Items[i].Status.KeyID)
	}
	for i := range clients.Items {
		row(&clients.Items[i], clients.Items[i].Status.ClientID)
	}
	return w.Flush()
}

func timeOr(t *metav1.Time, otherwise string) string {
	if t == nil {
		return otherwise
	}
	return t.UTC().Format(time.RFC3339)
}

// token reads the client's Secret (the same one a workload mounts) and runs the
// client_credentials grant against its token_url.
func (op *operator) token(ctx context.Context, oc *latchkeyv1.OAuthClient) error {
	if err := op.client.Get(ctx, client.ObjectKeyFromObject(oc), oc); err != nil {
		return err
	}
	secret := &corev1.Secret{}
	if err := op.client.Get(ctx, client.ObjectKey{Namespace: oc.Namespace, Name: oc.SecretName()}, secret); err != nil {
		return fmt.Errorf("reading the client's Secret: %w", err)
	}
	cfg := clientcredentials.Config{
		ClientID:     string(secret.Data[latchkeyv1.ClientIDSecretKey]),
		ClientSecret: string(secret.Data[latchkeyv1.ClientSecretSecretKey]),
		TokenURL:     string(secret.Data[latchkeyv1.TokenURLSecretKey]),
		Scopes:       strings.Fields(op.opts.scope),
	}
	if op.opts.tokenURL != "" {
		cfg.TokenURL = op.opts.tokenURL
	}
	if op.opts.audience != "" {
		cfg.EndpointParams = url.Values{"audience": {op.opts.audience}}
	}
	tok, err := cfg.Token(ctx)
	if err != nil {
		return err // the oauth2 library's error carries the RFC 6749 error body, never the secret
	}
	if op.opts.output != "json" {
		_, err := fmt.Fprintln(op.out, tok.AccessToken)
		return err
	}
	claims := map[string]any{}
	if parts := strings.Split(tok.AccessToken, "."); len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			_ = json.Unmarshal(payload, &claims)
		}
	}
	enc := json.NewEncoder(op.out)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{
		"access_token": tok.AccessToken, "token_type": tok.TokenType, "expiry": tok.Expiry, "scope": tok.Extra("scope"), "claims": claims,
	})
}

// rateLimits prints the credential's own cap and, for each API the user may list
// that accepts the credential's namespace and limits it, what the authorizer
// applies there (apirules.CredentialLimit, as the authorizer computes it).
func (op *operator) rateLimits(ctx context.Context, w io.Writer, obj credentialObject) {
	own := apirules.LimitOf(obj.Lifecycle().RateLimit)
	fmt.Fprintf(w, "Rate limit cap:\t%s\n", own)
	kind := latchkeyv1.KindAPIKey
	if _, ok := obj.(*latchkeyv1.OAuthClient); ok {
		kind = latchkeyv1.KindOAuthClient
	}
	var apis latchkeyv1.APIList
	if err := op.client.List(ctx, &apis); err != nil {
		// Other namespaces' APIs may be out of the user's sight: its own then.
		if err := op.client.List(ctx, &apis, client.InNamespace(obj.GetNamespace())); err != nil {
			fmt.Fprintf(w, "Rate limits:\tunknown (cannot list APIs: %v)\n", err)
			return
		}
	}
	for i := range apis.Items {
		api := &apis.Items[i]
		namespaces := api.Spec.Namespaces
		if len(namespaces) == 0 {
			namespaces = []string{api.Namespace}
		}
		if !slices.Contains(namespaces, "*") && !slices.Contains(namespaces, obj.GetNamespace()) {
			continue
		}
		if applied := apirules.CredentialLimit(apirules.APILimit(api, kind, obj.GetNamespace(), obj.GetName()), nil, own); applied != nil {
			fmt.Fprintf(w, "  API %s/%s:\t%s\n", api.Namespace, api.Name, applied)
		}
	}
}
