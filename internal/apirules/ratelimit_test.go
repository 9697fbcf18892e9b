package apirules

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

func TestCredentialLimit(t *testing.T) {
	limit := func(requests int32, per time.Duration) *Limit {
		return LimitOf(&latchkeyv1.RateLimit{Requests: requests, Per: metav1.Duration{Duration: per}})
	}
	perMinute100, perMinute1000, perSecond5 := limit(100, time.Minute), limit(1000, time.Minute), limit(5, time.Second)
	for _, tc := range []struct {
		name                  string
		apiDefault, over, own *Limit
		want                  *Limit
	}{
		{"the API's default", perMinute100, nil, nil, perMinute100},
		{"a credential cannot raise itself above the default", perMinute100, nil, perMinute1000, perMinute100},
		{"a credential may lower itself", perMinute1000, nil, perMinute100, perMinute100},
		{"the owner's override raises it", perMinute100, perMinute1000, nil, perMinute1000},
		{"within the override, the credential's own cap", perMinute100, perMinute1000, perSecond5, perSecond5},
		{"an override may also lower it", perMinute1000, perMinute100, nil, perMinute100},
		{"an API without a limit: the credential's own", nil, nil, perSecond5, perSecond5},
		{"nothing: no limit", nil, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CredentialLimit(tc.apiDefault, tc.over, tc.own); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	burst := int32(7)
	l := LimitOf(&latchkeyv1.RateLimit{Requests: 60, Per: metav1.Duration{Duration: time.Minute}, Burst: &burst})
	if l.Burst != 7 || l.Requests != 60 {
		t.Errorf("LimitOf with a burst: %+v", l)
	}
	if LimitOf(&latchkeyv1.RateLimit{Requests: 60, Per: metav1.Duration{Duration: time.Minute}}).Burst != 60 {
		t.Error("the burst defaults to the requests per period")
	}
}

// TestLowerIsPartWise: a cap with a lower rate and a larger burst lowers the rate
// and keeps the smaller burst: a cap never raises any part of a budget.
func TestLowerIsPartWise(t *testing.T) {
	api := &Limit{Requests: 3, Per: time.Hour, Burst: 3}
	own := &Limit{Requests: 48, Per: 24 * time.Hour, Burst: 48} // a lower rate, a larger burst
	got := CredentialLimit(api, nil, own)
	if got.Requests != 48 || got.Per != 24*time.Hour || got.Burst != 3 {
		t.Fatalf("got %+v, want 48 per 24h with a burst of 3", got)
	}
}
