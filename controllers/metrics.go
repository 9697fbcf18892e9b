package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// CredentialCollector exports each credential's state, computed from the
// manager's informer cache at scrape time (as cert-manager does for
// certificates): no per-request label, no state kept between scrapes, and a
// credential that is deleted simply stops appearing.
type CredentialCollector struct {
	Reader client.Reader
}

var (
	credentialLabels = []string{"kind", "namespace", "name"}
	readyDesc        = prometheus.NewDesc("latchkey_credential_ready",
		"1 when the credential's Ready condition is True: in the state its spec declares, which includes revoked or expired as declared (latchkey_credential_withdrawn tells those apart); 0 for a conflict, a Secret that cannot be written, or not yet reconciled.", credentialLabels, nil)
	withdrawnDesc = prometheus.NewDesc("latchkey_credential_withdrawn",
		"1 when the credential was revoked or expired as its spec says: Ready, and accepted nowhere.", credentialLabels, nil)
	expirationDesc = prometheus.NewDesc("latchkey_credential_expiration_timestamp_seconds",
		"spec.expiresAt, for credentials that expire.", credentialLabels, nil)
	graceEndDesc = prometheus.NewDesc("latchkey_credential_grace_period_end_timestamp_seconds",
		"When the last previous credential in its grace period stops being accepted (while one is).", credentialLabels, nil)
	lastUsedDesc = prometheus.NewDesc("latchkey_credential_last_used_timestamp_seconds",
		"status.lastUsedAt: the start of the period in which a token server or authorizer last accepted the credential.", credentialLabels, nil)
	leakReportedDesc = prometheus.NewDesc("latchkey_credential_leak_reported_timestamp_seconds",
		"When the newest report that one of the credential's keys was found public was made (status.leaks; kept for 7 days once the key is no longer accepted).", credentialLabels, nil)
	rateLimitCapDesc = prometheus.NewDesc("latchkey_credential_rate_limit_cap_requests_per_second",
		"spec.rateLimit as a steady rate: the credential's own cap on every API that limits it (what applies on one API is the lower of this and the API's limit for it; kubectl latchkey status shows it).", credentialLabels, nil)
	leakedAcceptedDesc = prometheus.NewDesc("latchkey_credential_leaked_accepted",
		"1 while a key reported public is still accepted (spec.leakResponse: flag, until a person rotates or revokes it), else 0.", credentialLabels, nil)
)

// scrapeTimeout bounds the cache reads of one scrape.
const scrapeTimeout = 5 * time.Second

func (c *CredentialCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{readyDesc, withdrawnDesc, expirationDesc, graceEndDesc, lastUsedDesc, leakReportedDesc, leakedAcceptedDesc, rateLimitCapDesc} {
		ch <- d
	}
}

func (c *CredentialCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var keys latchkeyv1.APIKeyList
	if err := c.Reader.List(ctx, &keys); err == nil {
		for i := range keys.Items {
			collectCredential(ch, "APIKey", &keys.Items[i])
		}
	}
	var clients latchkeyv1.OAuthClientList
	if err := c.Reader.List(ctx, &clients); err == nil {
		for i := range clients.Items {
			collectCredential(ch, "OAuthClient", &clients.Items[i])
		}
	}
}

func collectCredential(ch chan<- prometheus.Metric, kind string, obj CredentialObject) {
	labels := []string{kind, obj.GetNamespace(), obj.GetName()}
	status := obj.CredentialStatus()
	readyCondition := meta.FindStatusCondition(status.Conditions, latchkeyv1.ConditionReady)
	ready := 0.0
	if readyCondition != nil && readyCondition.Status == metav1.ConditionTrue {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready, labels...)
	withdrawn := 0.0
	if withdrawnAsDeclared(readyCondition) {
		withdrawn = 1
	}
	ch <- prometheus.MustNewConstMetric(withdrawnDesc, prometheus.GaugeValue, withdrawn, labels...)
	if expires := obj.Lifecycle().ExpiresAt; expires != nil {
		ch <- prometheus.MustNewConstMetric(expirationDesc, prometheus.GaugeValue, float64(expires.Unix()), labels...)
	}
	var graceEnd time.Time
	for _, cred := range status.Credentials {
		if cred.NotAfter != nil && cred.NotAfter.After(graceEnd) {
			graceEnd = cred.NotAfter.Time
		}
	}
	if !graceEnd.IsZero() {
		ch <- prometheus.MustNewConstMetric(graceEndDesc, prometheus.GaugeValue, float64(graceEnd.Unix()), labels...)
	}
	if status.LastUsedAt != nil {
		ch <- prometheus.MustNewConstMetric(lastUsedDesc, prometheus.GaugeValue, float64(status.LastUsedAt.Unix()), labels...)
	}
	leakedAccepted := 0.0
	if leaked := meta.FindStatusCondition(status.Conditions, latchkeyv1.ConditionLeaked); leaked != nil && leaked.Reason == latchkeyv1.ReasonLeakedKeyAccepted {
		leakedAccepted = 1
	}
	ch <- prometheus.MustNewConstMetric(leakedAcceptedDesc, prometheus.GaugeValue, leakedAccepted, labels...)
	if rl := obj.Lifecycle().RateLimit; rl != nil && rl.Per.Duration > 0 {
		ch <- prometheus.MustNewConstMetric(rateLimitCapDesc, prometheus.GaugeValue, float64(rl.Requests)/rl.Per.Seconds(), labels...)
	}
	if len(status.Leaks) > 0 {
		ch <- prometheus.MustNewConstMetric(leakReportedDesc, prometheus.GaugeValue, float64(status.Leaks[0].ReportedAt.Unix()), labels...)
	}
}
