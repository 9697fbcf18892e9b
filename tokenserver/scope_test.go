package tokenserver

import (
	"slices"
	"testing"

	"github.com/latchkey-dev/latchkey/tokenserver/oauth"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string // nil: refused
	}{
		{"leads:read", []string{"leads:read"}},
		{"leads:read leads:write", []string{"leads:read", "leads:write"}},
		{"leads:read  leads:write ", []string{"leads:read", "leads:write"}},
		{"leads:read leads:read leads:write leads:read", []string{"leads:read", "leads:write"}}, // granted once
		{"leads:read\u00a0leads:write", nil},                                                    // a Unicode space is not a separator
		{"leads:read\u2003leads:write", nil},
		{"leads:read\tleads:write", nil},
		{"leads:read\nleads:write", nil},
		{"leads:read\x00", nil},
		{"leads:read\x7f", nil},
		{`lead"s:read`, nil},
		{`leads\:read`, nil},
		{" ", nil},
	} {
		got, ok := oauth.ParseScope(tc.in)
		if (tc.want == nil) == ok || !slices.Equal(got, tc.want) {
			t.Errorf("oauth.ParseScope(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}
