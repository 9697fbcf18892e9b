package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/authz"
)

// An API-key header the gate could not match as configured is refused at start,
// before anything is served, rather than letting keys through no header or the
// Bearer one.
func TestRunRefusesAnAPIKeyHeaderItCannotMatch(t *testing.T) {
	for header, want := range map[string]string{
		"X-API-\u212Aey": "not an HTTP header name", // strings.ToLower makes it x-api-key
		"x api key":      "not an HTTP header name",
		":authority":     "not an HTTP header name",
		"authorization":  "cannot be Authorization",
		"AUTHORIZATION":  "cannot be Authorization",
	} {
		err := authz.Run(context.Background(), nil, authz.Options{IssuerURL: "https://issuer.test", APIKeyHeader: header})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--api-key-header %+q: got %v, want an error saying %q", header, err, want)
		}
	}
	if err := authz.Run(context.Background(), nil, authz.Options{APIKeyHeader: "X-API-Key"}); err == nil || !strings.Contains(err.Error(), "issuer URL is required") {
		t.Errorf("no issuer URL: got %v", err)
	}
}
