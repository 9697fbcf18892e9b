package v1alpha1_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	latchkeyv1 "github.com/latchkey-dev/latchkey/api/v1alpha1"
)

// The CRDs carry TimestampPattern on each timestamp a tenant writes.
func TestTimestampPatternIsTheCRDs(t *testing.T) {
	for file, fields := range map[string]int{
		"latchkey.dev_apikeys.yaml":      1, // spec.expiresAt
		"latchkey.dev_oauthclients.yaml": 1, // spec.expiresAt
		"latchkey.dev_oauthgrants.yaml":  1, // spec.grantedAt
	} {
		crd, err := os.ReadFile("../../config/crd/bases/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Count(string(crd), "pattern: "+latchkeyv1.TimestampPattern+"\n"); got != fields {
			t.Errorf("%s: TimestampPattern %d times, want %d", file, got, fields)
		}
	}
}

// What the pattern lets through, metav1.Time decodes: the API server's own
// date-time check takes more (a lower-case t or z), which no watch could read.
func TestTimestampPatternAcceptsOnlyWhatGoReads(t *testing.T) {
	pattern := regexp.MustCompile(latchkeyv1.TimestampPattern)
	var candidates []string
	for _, date := range []string{"2030-01-01", "2028-02-29", "0001-01-01", "9999-12-31"} {
		for _, sep := range []string{"T", "t", " ", "_"} {
			for _, clock := range []string{"00:00:00", "23:59:59", "12:30:45.5", "12:30:45.123456789", "12:30:45.1234567891", "12:30:45,5", "24:00:00", "12:60:00", "1:02:03"} {
				for _, zone := range []string{"Z", "z", "+00:00", "-23:59", "+05:30", "+24:00", "+0530", "", "UTC"} {
					candidates = append(candidates, date+sep+clock+zone)
				}
			}
		}
	}
	var accepted int
	for _, c := range candidates {
		if !pattern.MatchString(c) {
			continue
		}
		accepted++
		var decoded metav1.Time
		if err := json.Unmarshal([]byte(`"`+c+`"`), &decoded); err != nil {
			t.Errorf("%q matches the pattern, and metav1.Time cannot read it: %v", c, err)
		}
	}
	for _, c := range []string{"2030-01-01T00:00:00Z", "2030-01-01T12:30:45.5+05:30", "2028-02-29T23:59:59-23:59"} {
		if !pattern.MatchString(c) {
			t.Errorf("%q, as kubectl and Go write timestamps, is refused", c)
		}
	}
	for _, c := range []string{"2030-01-01t00:00:00Z", "2030-01-01T00:00:00z"} {
		if pattern.MatchString(c) {
			t.Errorf("%q is let through", c)
		}
	}
	t.Logf("%d of %d candidates match", accepted, len(candidates))
}
