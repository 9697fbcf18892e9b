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

// budget is one limit that applies to a request.
type budget struct {
	name string
	key  ratelimit.Key
	lim  *apirules.Limit
}

// limit spends the request from each budget that applies to it: the API's (its
// owner's override for the credential, or its default, lowered by the
// credential's own spec.rateLimit) and the matched rule's. It sets d.RateLimit,
// and turns d into a 429 when a budget is spent.
func (a *Authorizer) limit(d *Decision, api *index.API, rule *index.Rule) {
	if a.Limits == nil || d.holder.uid == "" {
		return
	}
	var budgets [2]budget
	n := 0
	if lim := apirules.CredentialLimit(api.LimitFor(d.holder.credential), nil, d.holder.own); lim != nil {
		budgets[n] = budget{"api", ratelimit.Key{Credential: d.holder.uid, API: api.Ref.UID, Rule: ratelimit.APIBudget}, lim}
		n++
	}
	if rule != nil && rule.RateLimit != nil {
		budgets[n] = budget{"route", ratelimit.Key{Credential: d.holder.uid, API: api.Ref.UID, Rule: int32(rule.Index)}, rule.RateLimit}
		n++
	}
	if n == 0 {
		return
	}
	now := a.Clock.Now()
	// The fields are appended into buffers on the stack: no formatting per request.
	var policyBuf, stateBuf [96]byte
	policy, state := policyBuf[:0], stateBuf[:0]
	var retry time.Duration
	for i, b := range budgets[:n] {
		r := a.Limits.Take(b.key, b.lim, now)
		if i > 0 {
			policy, state = append(policy, ", "...), append(state, ", "...)
		}
		policy = append(append(append(policy, '"'), b.name...), `";q=`...)
		policy = strconv.AppendInt(policy, b.lim.Requests, 10)
		policy = strconv.AppendInt(append(policy, ";w="...), ceilSeconds(b.lim.Per), 10)
		state = append(append(append(state, '"'), b.name...), `";r=`...)
		state = strconv.AppendInt(state, r.Remaining, 10)
		state = strconv.AppendInt(append(state, ";t="...), ceilSeconds(r.Reset), 10)
		if !r.Allowed {
			retry = max(retry, r.RetryAfter)
		}
	}
	d.RateLimit = &RateLimitHeaders{Policy: string(policy), State: string(state)}
	if retry > 0 {
		d.RateLimit.RetryAfter = ceilSeconds(retry)
		d.Status, d.Outcome, d.Error = 429, RateLimited, "rate_limited"
		d.Description = "the credential's rate limit on this API is spent; retry after " + strconv.FormatInt(d.RateLimit.RetryAfter, 10) + " s"
		d.Identity, d.CredentialHeaders = nil, nil
	}
}

// ceilSeconds rounds up to whole seconds (at least 1 for anything above zero).
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

func apiKeyHolder(k *index.Key) holder {
	return holder{credential: index.Credential{Kind: latchkeyv1.KindAPIKey, Namespace: k.Ref.Namespace, Name: k.Ref.Name},
		uid: k.Ref.UID, own: k.RateLimit}
}

func tokenHolder(h index.TokenHolder) holder {
	if h.Grant != nil {
		return holder{credential: index.Credential{Kind: latchkeyv1.KindOAuthGrant, Namespace: h.Grant.Ref.Namespace, Name: h.Grant.Ref.Name},
			uid: h.Grant.Ref.UID, own: h.Client.RateLimit}
	}
	return holder{credential: index.Credential{Kind: latchkeyv1.KindOAuthClient, Namespace: h.Client.Ref.Namespace, Name: h.Client.Ref.Name},
		uid: h.Client.Ref.UID, own: h.Client.RateLimit}
}
