package scanning_test

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/leakscan"
)

// repoConfig is the repository's own scan configuration, at its root.
const repoConfig = ".gitleaks.toml"

// repoRoot is the repository's root, from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, repoConfig)); err != nil {
		t.Fatalf("the repository's scan configuration: %v", err)
	}
	return root
}

// TestRepositoryScansClean: gitleaks run from the repository's root, as a
// contributor or a CI job runs it (`gitleaks dir .`, finding .gitleaks.toml
// there), then check-leaks' filter (which drops key-shaped examples with a wrong
// checksum, such as the README's), finds nothing in the tree. Findings are named
// by file, line and rule, never by what they found.
func TestRepositoryScansClean(t *testing.T) {
	root := repoRoot(t)
	// gitleaks reads a .gitleaksignore of fingerprints beside the tree: findings
	// hidden where no reviewer sees them. The exceptions live in .gitleaks.toml.
	if _, err := os.Stat(filepath.Join(root, ".gitleaksignore")); err == nil {
		t.Fatal(".gitleaksignore hides findings by fingerprint: spare a made-up value in .gitleaks.toml instead")
	}
	findings, _ := runGitleaks(t, root, repoConfig, os.Environ(), "dir", ".")
	kept, _, err := leakscan.Filter(findings)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range kept {
		t.Errorf("%s:%d: a finding of gitleaks' %s rule (a real secret must go; a made-up value the rule "+
			"takes for one is spared by its value in .gitleaks.toml)", f.File, f.StartLine, f.RuleID)
	}
}

// guessable is a made-up password-like value: 20 distinct characters, above
// generic-api-key's entropy threshold, and none of its stopwords.
const guessable = "Vq8Tn3Lw6Rz9Kc2Xh5Jm"

// TestRepositoryScanSparesOnlyItsValues: .gitleaks.toml spares made-up values by
// their value, the fuzz corpus's tokens by their folder, and nothing else. A
// Latchkey key, a GitHub token and a password-like value in a test file are
// found, and so is a token in any other testdata; the spared values are spared
// wherever they stand, test or not.
func TestRepositoryScanSparesOnlyItsValues(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	write := func(name, text string) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	github := "ghp_" + rand.Text()[:26] + strings.ToLower(rand.Text())[:10] // github-pat: ghp_ and 36 of [0-9A-Za-z]
	enc := base64.RawURLEncoding
	jwt := enc.EncodeToString([]byte(`{"alg":"ES256","typ":"JWT"}`)) + "." +
		enc.EncodeToString([]byte(`{"sub":"someone","iat":1790000000}`)) + "." + enc.EncodeToString([]byte(rand.Text()+rand.Text()))
	write("leak_test.go", "package leak\n\nconst latchkeyKey = \""+newKey(t, "lk", "live")+"\"\n\nconst githubToken = \""+github+
		"\"\n\nconst apiSecret = \""+guessable+"\"\n")
	write("testdata/token.txt", jwt+"\n")
	write("tokenserver/testdata/fuzz/FuzzIntrospect/corpus", "go test fuzz v1\nstring(\""+jwt+"\")\n")
	write("settings.go", "package leak\n\n// +kubebuilder:resource:shortName=lkapi,categories=latchkey\n"+
		"var user = User{Username: \"alice\", Password: \"Alice-e2e-Passw0rd\"}\n")

	findings, log := runGitleaks(t, root, repoConfig, os.Environ(), "dir", dir)
	var got []string
	for _, f := range findings {
		rel, err := filepath.Rel(dir, f.File)
		if err != nil {
			rel = f.File
		}
		got = append(got, rel+" "+f.RuleID)
	}
	sort.Strings(got)
	want := []string{"leak_test.go generic-api-key", "leak_test.go github-pat", "leak_test.go " + leakscan.RuleID, "testdata/token.txt jwt"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the repository's configuration over secrets and spared values found\n  %s\nwant\n  %s\n(gitleaks' log:\n%s)",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "), log)
	}
}
