package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TimestampPattern is what a timestamp a tenant writes (spec.expiresAt,
// spec.grantedAt) must match besides the schema's date-time format: RFC 3339 as
// Go's time.Parse reads it. The API server's date-time check also takes a
// lower-case "t" or "z" (RFC 3339 allows them), which metav1.Time refuses to
// decode: one such object would stop every watch of its kind across the cluster
// (the manager's, the token servers', the authorizers'), since each decode error
// restarts a list that fails on the same object. The markers repeat it (a marker
// cannot name a constant); a test keeps them equal. A rule beside it keeps the
// instant between 1970 and 9000: an offset can carry a year-9999 time past the
// year 10000 in UTC, which the manager could then not write back into status.
const TimestampPattern = `^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

// Names shared by every credential kind.
const (
	// OperatorKeyPrefix begins the operator's own labels and annotations; the CRD
	// keeps keys under it out of spec.secretTemplate.
	OperatorKeyPrefix = "latchkey.dev/"

	// RotateAnnotation requests a rotation: set it to any value not handled before
	// (for example a timestamp) and the credential is rotated once.
	RotateAnnotation = "latchkey.dev/rotate"

	// ReconcileAnnotation asks for a reconcile now: set it to a new value (for
	// example a timestamp), as Flux's reconcile.fluxcd.io/requestedAt. Labels and
	// other annotations do not: the manager's cache leaves them out.
	ReconcileAnnotation = "latchkey.dev/reconcile"

	// SerialAnnotation is written on a credential Secret. It numbers the credential
	// the Secret holds, so that the operator can tell a credential it issued but
	// has not yet recorded (adopt it) from an older or altered one (never adopt it).
	SerialAnnotation = "latchkey.dev/serial"

	// IssuanceProofAnnotation is written on a credential Secret beside the serial:
	// an HMAC, under a key only the manager holds, of the object's identity, the
	// serial and the credential's hash. A credential is adopted from a Secret only
	// with a valid proof, so nothing a tenant writes into its Secret is ever adopted.
	IssuanceProofAnnotation = "latchkey.dev/issuance-proof"

	// SecretTemplateKeysAnnotation is written on a credential Secret whose spec has
	// a secretTemplate: the label and annotation keys the template put there (JSON),
	// so that a key dropped from the template is removed from the Secret, and no
	// key the template never set is.
	SecretTemplateKeysAnnotation = "latchkey.dev/template-keys"

	// ConditionReady is True once an object is in the state its spec declares.
	// That includes a credential revoked or expired as declared (reasons Revoked,
	// Expired): revoking a key through Git is the desired state reached, so GitOps
	// tools must see it as done. Whether a credential is accepted is its reason
	// (Issued, Rotating) and status.credentials, shown in the State column.
	ConditionReady = "Ready"

	// ConditionReconciling is True while the operator still has work to do on an
	// object that it will do by itself (a failed write it retries, a rotation
	// requested and not yet done), and absent otherwise. kstatus and Flux read it
	// as InProgress.
	ConditionReconciling = "Reconciling"

	// ConditionStalled is True while an object is in a state that retrying cannot
	// fix and a person must (a Secret or identifier held by another object, a scope
	// no API lists), and absent otherwise. kstatus and Flux read it as Failed.
	ConditionStalled = "Stalled"

	// DefaultGracePeriod applies to a rotation when spec.rotation.gracePeriod is not set.
	DefaultGracePeriod = "1h"
)

// Reasons of the Ready condition.
const (
	ReasonIssued         = "Issued"         // True: the credential is in its Secret and its hash is accepted
	ReasonRotating       = "Rotating"       // True: a new credential is issued; a previous one is in its grace period
	ReasonExpired        = "Expired"        // True: spec.expiresAt has passed, as declared; nothing is accepted
	ReasonRevoked        = "Revoked"        // True: spec.revoked is true, as declared; nothing is accepted
	ReasonSecretConflict = "SecretConflict" // False, Stalled: the Secret exists and is not controlled by this object
	ReasonIssueFailed    = "IssueFailed"    // False, Reconciling: the Secret could not be written; retried
	ReasonSecretRejected = "SecretRejected" // False, Stalled: the API server refuses the Secret as the spec shapes it (secretTemplate)
	// False, Stalled: another OAuthClient holds the same client_id by right (it was derived for that one).
	ReasonClientIDConflict = "ClientIDConflict"
	// Reason of Reconciling: a rotation was requested and is done on the next reconcile.
	ReasonRotationPending = "RotationPending"
)

// The Leaked condition: True while status.leaks holds a report, that is while a
// reported credential is still accepted and until LeakRecordRetention after the
// last report. Absent otherwise.
const (
	ConditionLeaked = "Leaked"
	// ReasonLeakedKeyAccepted: a reported credential is still accepted
	// (spec.leakResponse: flag). A person must rotate or revoke it.
	ReasonLeakedKeyAccepted = "LeakedKeyAccepted"
	// ReasonLeakedKeyRevoked: every reported credential stopped being accepted.
	ReasonLeakedKeyRevoked = "LeakedKeyRevoked"
	// ReasonLeakReported is the Warning Event of a report the manager acted on.
	ReasonLeakReported = "LeakReported"

	// LeakRecordRetention is how long after it was made a report stays in
	// status.leaks (and Leaked stays True) once its credential is no longer
	// accepted; a report of a credential still accepted stays as long as it is.
	LeakRecordRetention = 7 * 24 * time.Hour
	// MaxLeakRecords bounds status.leaks; the manager keeps at most
	// MaxResolvedLeakRecords of the reports whose credential is no longer
	// accepted, so that a new report always finds room.
	MaxLeakRecords         = 16
	MaxResolvedLeakRecords = 8
	// ReporterSelf names reports made with the credential itself (POST /credentials/revoke).
	ReporterSelf = "self"
)

// LeakResponse is what the manager does when one of a credential's keys is
// reported public (spec.leakResponse).
// +kubebuilder:validation:Enum=revoke;flag
type LeakResponse string

const (
	// LeakResponseRevoke stops accepting the reported credential at once, with no
	// grace period, and issues a new one into the Secret if it was the current one.
	LeakResponseRevoke LeakResponse = "revoke"
	// LeakResponseFlag only reports it (the Leaked condition, an Event, a metric,
	// an alert): the credential keeps working until a person rotates or revokes it.
	LeakResponseFlag LeakResponse = "flag"
)

// LeakOutcome is what the manager did about one report.
type LeakOutcome string

const (
	LeakOutcomeRevoked     LeakOutcome = "Revoked"     // the credential was withdrawn (spec.leakResponse: revoke)
	LeakOutcomeFlagged     LeakOutcome = "Flagged"     // the credential is still accepted (spec.leakResponse: flag)
	LeakOutcomeNotAccepted LeakOutcome = "NotAccepted" // the credential is no longer accepted: rotated away, revoked or expired since
)

// LeakRecord is one report that a credential of this object was found public:
// by a secret scanner (GitHub's secret scanning partner program and others in
// its format) or by someone holding it (POST /credentials/revoke). The token
// server writes it; the manager acts on it.
type LeakRecord struct {
	// Hash of the reported credential: one of status.credentials when it was reported.
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Hash string `json:"hash"`

	// ReportedAt is when the token server received the report.
	ReportedAt metav1.Time `json:"reportedAt"`

	// Reporter is the configured name of the scanner that reported it ("github"),
	// or "self" for a report made with the credential itself.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Reporter string `json:"reporter"`

	// URL where the scanner found it, as the signed report says.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	URL string `json:"url,omitempty"`

	// Source is the kind of place the scanner found it ("content", "commit",
	// "npm"), as the signed report says.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Source string `json:"source,omitempty"`

	// Outcome is what the manager did; empty until it read the report.
	// +kubebuilder:validation:Enum=Revoked;Flagged;NotAccepted
	// +optional
	Outcome LeakOutcome `json:"outcome,omitempty"`
}

// CredentialSpec holds the lifecycle settings that every credential kind shares.
// Each kind embeds it inline; its spec carries the rule that keeps secretName immutable.
type CredentialSpec struct {
	// ExpiresAt is the moment after which the credential is no longer accepted:
	// every hash is removed from status and the Secret is deleted.
	// Moving it into the future again issues a brand-new credential.
	// RFC 3339 as Go reads it (see TimestampPattern).
	// +kubebuilder:validation:XValidation:rule="self >= timestamp('1970-01-01T00:00:00Z') && self < timestamp('9000-01-01T00:00:00Z')",message="must be between 1970 and 9000 (UTC)"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=date-time
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// Rotation replaces the credential on a schedule; the previous one keeps
	// working for the grace period.
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`

	// Revoked withdraws the credential at once: every hash is removed from
	// status and the Secret is deleted. Setting it back to false issues a
	// brand-new credential; a revoked one is never accepted again.
	// +optional
	Revoked bool `json:"revoked,omitempty"`

	// SecretName names the Secret, in the same namespace, that receives the
	// plaintext credential. Defaults to "<name>-<kind suffix>". Immutable.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// SecretTemplate holds labels and annotations to put on the Secret.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// LeakResponse is what happens when a secret scanner, or anyone holding the
	// credential, reports it public: "revoke" (the default) stops accepting it at
	// once and issues a new one into the Secret; "flag" only reports it (the
	// Leaked condition, a Warning Event, an alert) and leaves it working until a
	// person acts. Revoke is the default because a key pushed to a public
	// repository is tried by others within minutes, and a false report costs a
	// rotation, while a true one left working costs a breach.
	// +kubebuilder:default=revoke
	// +optional
	LeakResponse LeakResponse `json:"leakResponse,omitempty"`

	// RateLimit lowers this credential's budget on every API that limits it: the
	// edge authorizer applies the lower of this and the API's (spec.rateLimit, or
	// the override its owner lists for this credential). It can never raise it.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// RotationPolicy says when a credential is replaced and how long the previous one stays valid.
// +kubebuilder:validation:XValidation:rule="!has(self.interval) || !has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.interval)",message="gracePeriod must be shorter than interval"
type RotationPolicy struct {
	// Interval between automatic rotations, as a Go duration ("720h").
	// Without it the credential is rotated only on request (the latchkey.dev/rotate annotation).
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="interval must be at least 1m"
	// +optional
	Interval *metav1.Duration `json:"interval,omitempty"`

	// GracePeriod during which the previous credential is still accepted after a rotation.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('720h')",message="gracePeriod must be between 0s and 720h"
	// +optional
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// SecretTemplate is metadata the operator keeps on the credential Secret. Keys
// under latchkey.dev/ are the operator's own. Its size is bounded, as the
// manager holds every credential's spec in memory.
type SecretTemplate struct {
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('latchkey.dev/') && size(k) <= 317 && size(self[k]) <= 63)",message="labels under latchkey.dev/ are the operator's; a label key has at most 317 characters, a value 63"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('latchkey.dev/') && size(k) <= 317 && size(self[k]) <= 4096)",message="annotations under latchkey.dev/ are the operator's; an annotation key has at most 317 characters, a value 4096"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// CredentialHash is an accepted credential, by hash only.
type CredentialHash struct {
	// Hash of the plaintext credential, "sha256:<64 hex>".
	// +kubebuilder:validation:Pattern=`^sha256:[0-9a-f]{64}$`
	Hash string `json:"hash"`

	// Serial numbers the credential; the Secret holding it carries the same number.
	Serial int64 `json:"serial"`

	// IssuedAt is when the operator generated the credential.
	IssuedAt metav1.Time `json:"issuedAt"`

	// NotAfter is set once the credential has been replaced: it is accepted
	// until then (the grace period) and removed afterwards.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
}

// SecretReference names the Secret that holds a credential.
type SecretReference struct {
	Name string `json:"name"`
}

// CredentialStatus is the observed state that every credential kind shares.
type CredentialStatus struct {
	// Why conditions are atomic, not the usual map by type: only the manager
	// writes them, always the whole list (a merge patch replaces a list), so
	// ownership per condition buys nothing, and it costs: every field a write sets
	// is listed in the object's managedFields, which kube-apiserver holds decoded
	// for every cached object (make bench-quick at 10,000 APIKeys: managedFields
	// 964 -> 634 bytes as stored, kube-apiserver's heap ~4.7 KB less per
	// credential, etcd's in use 27% less).

	// Conditions: Ready (reason Issued, Rotating, Registered, Revoked, Expired,
	// SecretConflict, SecretRejected, ClientIDConflict or IssueFailed), ScopesKnown,
	// Leaked while status.leaks holds a report, and Reconciling and Stalled while
	// they are True.
	// +listType=atomic
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ObservedGeneration is the generation last reconciled successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Credentials accepted now: the current one first, then any in their grace period.
	// Empty while revoked or expired.
	// +listType=atomic
	// +optional
	Credentials []CredentialHash `json:"credentials,omitempty"`

	// Serial of the newest credential ever issued. It never goes back, so a
	// revoked or replaced credential is never adopted again.
	// +optional
	Serial int64 `json:"serial,omitempty"`

	// ExpiresAt mirrors spec.expiresAt once the credential is issued.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// LastRotatedAt is when the current credential replaced a previous one.
	// +optional
	LastRotatedAt *metav1.Time `json:"lastRotatedAt,omitempty"`

	// LastRotateRequest is the last value of the latchkey.dev/rotate annotation acted on.
	// +optional
	LastRotateRequest string `json:"lastRotateRequest,omitempty"`

	// LastUsedAt is the start of the period (the token server's --last-used-granularity,
	// an hour by default) in which the token server last accepted this credential.
	// +optional
	LastUsedAt *metav1.Time `json:"lastUsedAt,omitempty"`

	// SecretRef names the Secret that holds the current credential.
	// +structType=atomic
	// +optional
	SecretRef *SecretReference `json:"secretRef,omitempty"`

	// Leaks are the reports that one of these credentials was found public, newest
	// first. The token server adds them (an admission policy lets it add only
	// reports of a credential in status.credentials); the manager acts on them and,
	// once a report's credential is no longer accepted, drops it
	// LeakRecordRetention after it was made (and keeps at most
	// MaxResolvedLeakRecords such reports).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Leaks []LeakRecord `json:"leaks,omitempty"`
}
