package authz

import "testing"

// The API an auth URL names is "<namespace>/<name>" exactly as the path spells
// it, scopes or not; a path that names none, or names it otherwise, names none.
func TestParseAuthPathNamesTheAPIOfThePath(t *testing.T) {
	for rest, want := range map[string]string{
		"/api/team-a/leads":                   "team-a/leads",
		"/api/team-a/leads.v2/scopes/a:b,c:d": "team-a/leads.v2",
		"/api/n/x/scopes/":                    "n/x",
		"/scopes/leads:read":                  "",
		"":                                    "",
	} {
		target, refused := parseAuthPath(rest, "")
		if refused != nil {
			t.Errorf("%q refused: %s", rest, refused.Description)
			continue
		}
		if target.api != want {
			t.Errorf("%q names API %q, want %q", rest, target.api, want)
		}
	}
	for _, rest := range []string{"//api/team-a/leads", "/api/team-a", "/api/Team-A/leads", "/api/team-a/leads/extra"} {
		if target, refused := parseAuthPath(rest, ""); refused == nil {
			t.Errorf("%q names API %q, want a refusal", rest, target.api)
		}
	}
}
