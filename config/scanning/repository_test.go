package scanning_test

import (
	"crypto/rand"
	"math/big"
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
	findings, _ := runGitleaks(t, root, repoConfig, os.Environ(), "dir", ".")
	kept, _, err := leakscan.Filter(findings)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range kept {
		t.Errorf("%s:%d: a finding of gitleaks' %s rule (a real secret must go; a made-up value the rule "+
			"mistakes for one is spared in .gitleaks.toml, as narrowly as it can be)", f.File, f.StartLine, f.RuleID)
	}
}

// TestRepositoryScanFindsSecretsInTests: the allowlists of .gitleaks.toml spare
// the made-up values of tests from two guessing rules, not secrets. A Latchkey
// key and a GitHub token in a test file are still found; so is a password-like
// value outside tests, while the same kind of value in a test is spared.
func TestRepositoryScanFindsSecretsInTests(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	key := newKey(t, "lk", "live")
	github := "ghp_" + rand.Text()[:26] + strings.ToLower(rand.Text())[:10] // github-pat: ghp_ and 36 of [0-9A-Za-z]
	madeUp := distinctCharacters(t)
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("leak_test.go", "package leak\n\nconst latchkeyKey = \""+key+"\"\n\nconst githubToken = \""+github+
		"\"\n\nvar user = struct{ Password string }{Password: \""+madeUp+"\"}\n")
	write("settings.go", "package leak\n\nconst apiSecret = \""+madeUp+"\"\n")

	findings, log := runGitleaks(t, root, repoConfig, os.Environ(), "dir", dir)
	var got []string
	for _, f := range findings {
		got = append(got, filepath.Base(f.File)+" "+f.RuleID)
	}
	sort.Strings(got)
	want := []string{"leak_test.go github-pat", "leak_test.go " + leakscan.RuleID, "settings.go generic-api-key"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the repository's configuration over a test file with secrets found\n  %s\nwant\n  %s\n(gitleaks' log:\n%s)",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "), log)
	}
	if kept, _, err := leakscan.Filter(findings); err != nil || len(kept) != len(findings) {
		t.Fatalf("check-leaks' filter kept %d of %d findings (%v), want all: the key is real", len(kept), len(findings), err)
	}
}

// distinctCharacters is a random value of 14 letters and 6 digits, all distinct:
// a password-like value whose entropy (log2 20, 4.32 bits per character) is above
// gitleaks' generic-api-key threshold every time, not most times.
func distinctCharacters(t *testing.T) string {
	t.Helper()
	pick := func(from string, n int) []byte {
		b := []byte(from)
		for i := len(b) - 1; i > 0; i-- {
			j, err := rand.Int(rand.Reader, big.NewInt(int64(i+1)))
			if err != nil {
				t.Fatal(err)
			}
			b[i], b[j.Int64()] = b[j.Int64()], b[i]
		}
		return b[:n]
	}
	return string(pick(string(pick("ABCDEFGHJKLMNPQRSTUVWXYZ", 14))+string(pick("23456789", 6)), 20))
}
