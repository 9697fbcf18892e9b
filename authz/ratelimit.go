package authz

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
	"github.com/latchkey-dev/latchkey/internal/apirules"
	"github.com/latchkey-dev/latchkey/internal/index"
	"github.com/latchkey-dev/latchkey/internal/ratelimit"
)

// RateLimited is the outcome of a request over its credential's budget: 429.
const RateLimited Outcome = "rate_limited"

// holder is the credential a request was authenticated with, as budgets name it:
// the APIKey, the OAuthClient of its own tokens, or the OAuthGrant of a
// third-party app in a workspace (an app is counted per workspace).
type holder struct {
	credential index.Credential
	uid        types.UID
	// own is the credential's own spec.rateLimit (an app's: its OAuthClient's).
	own *apirules.Limit
	// at is when the credential was accepted: its budgets are spent at that
	// moment, so that a request reads the clock once.
	at time.Time
}

// RateLimitHeaders are the draft-ietf-httpapi-ratelimit-headers fields of an
// answer, allowed or refused, for each budget that applied: "api" (the API's
// budget for the credential) and "route" (the matched rule's).
type RateLimitHeaders struct {
	// Policy is RateLimit-Policy: `"api";q=100;w=60`, quota and window in seconds.
	Policy string
	// State is RateLimit: `"api";r=42;t=10`, remaining and seconds until whole again.
	State string
	// RetryAfter is Retry-After in seconds, for a refusal.
	RetryAfter int64
}

// budgetNames name the budgets in the RateLimit fields, by their place.
var budgetNames = [2]string{"api", "route"}

// limit spends the request from each budget that applies to it, or from none:
// the API's (its owner's override for the credential, or its default, lowered
// by the credential's own spec.rateLimit) and the matched rule's. It sets
// d.RateLimit, and turns d into a 429 when a budget is spent (or a new one finds
// no room: the gate fails closed).
func (a *Authorizer) limit(d *Decision, api *index.API, rule *index.Rule) {
	if a.Limits == nil || d.holder.uid == "" {
		return
	}
	var budgets [2]ratelimit.Budget
	var names [2]string
	n := 0
	if lim := apirules.CredentialLimit(api.LimitFor(d.holder.credential), nil, d.holder.own); lim != nil {
		budgets[n] = ratelimit.Budget{Key: ratelimit.Key{Credential: d.holder.uid, API: api.Ref.UID, Rule: ratelimit.APIBudget}, Limit: lim}
		names[n] = budgetNames[0]
		n++
	}
	if rule != nil && rule.RateLimit != nil {
		budgets[n] = ratelimit.Budget{Key: ratelimit.Key{Credential: d.holder.uid, API: api.Ref.UID, Rule: rule.ID}, Limit: rule.RateLimit}
		names[n] = budgetNames[1]
		n++
	}
	if n == 0 {
		return
	}
	var results [2]ratelimit.Result
	allowed, noRoom := a.Limits.Take(d.holder.at, d.holder.credential.Namespace, budgets[:n], results[:n])
	// Both fields are appended into one buffer on the stack, the policy then the
	// state, and become one string: one allocation per request.
	var buf [192]byte
	fields := buf[:0]
	for i := range n {
		if i > 0 {
			fields = append(fields, ", "...)
		}
		fields = append(append(append(fields, '"'), names[i]...), `";q=`...)
		fields = strconv.AppendInt(fields, budgets[i].Limit.Requests, 10)
		fields = strconv.AppendInt(append(fields, ";w="...), ceilSeconds(budgets[i].Limit.Per), 10)
	}
	policyEnd := len(fields)
	var retry time.Duration
	for i, r := range results[:n] {
		if i > 0 {
			fields = append(fields, ", "...)
		}
		fields = append(append(append(fields, '"'), names[i]...), `";r=`...)
		fields = strconv.AppendInt(fields, r.Remaining, 10)
		fields = strconv.AppendInt(append(fields, ";t="...), ceilSeconds(r.Reset), 10)
		retry = max(retry, r.RetryAfter)
	}
	both := string(fields)
	d.RateLimit = RateLimitHeaders{Policy: both[:policyEnd], State: both[policyEnd:]}
	if allowed {
		return
	}
	d.RateLimit.RetryAfter = max(1, ceilSeconds(retry))
	d.Status, d.Outcome, d.Error = 429, RateLimited, "rate_limited"
	if noRoom {
		d.Description = "too many of this workspace's credentials are counted at once; retry after " + strconv.FormatInt(d.RateLimit.RetryAfter, 10) + " s"
	} else {
		d.Description = "the credential's rate limit on this API is spent; retry after " + strconv.FormatInt(d.RateLimit.RetryAfter, 10) + " s"
	}
	d.Identity, d.CredentialHeaders = nil, nil
}

// ceilSeconds rounds up to whole seconds (at least 1 for anything above zero).
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func apiKeyHolder(k *index.Key, at time.Time) holder {
	return holder{credential: index.Credential{Kind: latchkeyv1.KindAPIKey, Namespace: k.Ref.Namespace, Name: k.Ref.Name},
		uid: k.Ref.UID, own: k.RateLimit, at: at}
}

func tokenHolder(h index.TokenHolder, at time.Time) holder {
	if h.Grant != nil {
		return holder{credential: index.Credential{Kind: latchkeyv1.KindOAuthGrant, Namespace: h.Grant.Ref.Namespace, Name: h.Grant.Ref.Name},
			uid: h.Grant.Ref.UID, own: h.Client.RateLimit, at: at}
	}
	return holder{credential: index.Credential{Kind: latchkeyv1.KindOAuthClient, Namespace: h.Client.Ref.Namespace, Name: h.Client.Ref.Name},
		uid: h.Client.Ref.UID, own: h.Client.RateLimit, at: at}
}
