// Package scanning is the secret-scanning pack: gitleaks.toml (a gitleaks rule for
// Latchkey API keys) and github-custom-pattern.md (the same pattern for GitHub).
// Its test runs the real gitleaks (built by hack/gitleaks.sh: `make gitleaks`)
// with gitleaks.toml over a git repository and a directory holding a real key, a
// key with a wrong checksum and look-alikes, filters the report with
// internal/leakscan (what `kubectl latchkey check-leaks` runs), and checks that
// only the real key is left. No key is ever printed: findings are named by key ID
// and by the fixture they come from.
package scanning_test

import (
	"bytes"
	"crypto/rand"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/credential"
	"github.com/latchkey-dev/latchkey/internal/leakscan"
	"github.com/latchkey-dev/latchkey/internal/testenv"
)

const (
	tomlFile    = "gitleaks.toml"
	patternFile = "github-custom-pattern.md"
	// fixtureFile is where the keys are written; not a path of gitleaks' global
	// allowlist (github-custom-pattern.md, "What gitleaks misses").
	fixtureFile = "deploy.env"
)

// gitleaks returns the binary hack/gitleaks.sh built. The test fails, never
// skips, without it: a skipped test would let the rule rot unnoticed.
func gitleaks(t *testing.T) string {
	t.Helper()
	bin, err := testenv.BuiltTool("gitleaks", "GITLEAKS_VERSION", "v8.30.1")
	if err != nil {
		t.Fatalf("\n\n*** The secret-scanning test runs the real gitleaks and it is missing. ***\n"+
			"*** Build it with `make gitleaks` (once; a few minutes), then rerun.    ***\n\n%v", err)
	}
	return bin
}

// rule is what the test reads of gitleaks.toml's latchkey-api-key rule.
type rule struct {
	regex, allowlist string
	entropy          float64
}

func readRule(t *testing.T) rule {
	t.Helper()
	raw, err := os.ReadFile(tomlFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	if n := strings.Count(text, "[[rules]]"); n != 1 || !strings.Contains(text, `id = "`+leakscan.RuleID+`"`) {
		t.Fatalf("%s: want exactly one [[rules]], id %q; found %d rules", tomlFile, leakscan.RuleID, n)
	}
	one := func(expr string) string {
		m := regexp.MustCompile(expr).FindAllStringSubmatch(text, -1)
		if len(m) != 1 {
			t.Fatalf("%s: want exactly one line matching %s, found %d", tomlFile, expr, len(m))
		}
		return m[0][1]
	}
	r := rule{
		regex:     one(`(?m)^regex = '''(.+)'''$`),
		allowlist: one(`(?m)^regexes = \['''(.+)'''\]$`),
	}
	if r.entropy, err = strconv.ParseFloat(one(`(?m)^entropy = ([0-9.]+)$`), 64); err != nil {
		t.Fatalf("%s: entropy: %v", tomlFile, err)
	}
	return r
}

// fencedAfter returns the first fenced code block after marker in the Markdown text.
func fencedAfter(t *testing.T, md, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(md, marker)
	if !ok {
		t.Fatalf("%s: no %q", patternFile, marker)
	}
	m := regexp.MustCompile("(?s)```[a-z]*\n(.*?)\n[ \t]*```").FindStringSubmatch(rest)
	if m == nil {
		t.Fatalf("%s: no code block after %q", patternFile, marker)
	}
	return strings.TrimSpace(m[1])
}

// TestPatternsAgree: gitleaks' rule, GitHub's custom pattern and leakscan are one
// expression, character for character.
func TestPatternsAgree(t *testing.T) {
	r := readRule(t)
	if want := `\b(` + leakscan.SecretPattern + `)\b`; r.regex != want {
		t.Errorf("%s regex\n got %s\nwant %s (leakscan.SecretPattern as the secret group, between \\b)", tomlFile, r.regex, want)
	}
	raw, err := os.ReadFile(patternFile)
	if err != nil {
		t.Fatal(err)
	}
	md := string(raw)
	if got := fencedAfter(t, md, "**Secret format**"); got != leakscan.SecretPattern {
		t.Errorf("%s secret format\n got %s\nwant %s (leakscan.SecretPattern)", patternFile, got, leakscan.SecretPattern)
	}
	if got := fencedAfter(t, md, "must *not* match"); got != r.allowlist {
		t.Errorf("%s must-not-match\n got %s\nwant %s (%s's allowlist)", patternFile, got, r.allowlist, tomlFile)
	}
	// The before/after patterns are \b: not a word character ([0-9A-Za-z_]).
	if got := fencedAfter(t, md, "**Before secret**"); got != `\A|[^0-9A-Za-z_]` {
		t.Errorf("%s before secret: %s", patternFile, got)
	}
	if got := fencedAfter(t, md, "**After secret**"); got != `\z|[^0-9A-Za-z_]` {
		t.Errorf("%s after secret: %s", patternFile, got)
	}
	// The partner program's expression is the rule's with a fixed prefix.
	if got, want := fencedAfter(t, md, "the regular expression, with your prefix"),
		`\bacme_`+strings.TrimPrefix(leakscan.SecretPattern, `[a-z][a-z0-9]{0,11}_`)+`\b`; got != want {
		t.Errorf("%s partner program expression\n got %s\nwant %s", patternFile, got, want)
	}
	if !strings.Contains(md, "## What gitleaks misses") {
		t.Errorf("%s: no \"What gitleaks misses\" section (gitleaks.toml refers to it)", patternFile)
	}
}

// entropy is gitleaks' Shannon entropy (detect/utils.go shannonEntropy).
func entropy(s string) float64 {
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
	}
	var e float64
	for _, n := range counts {
		p := float64(n) / float64(len(s))
		e -= p * math.Log2(p)
	}
	return e
}

// TestThresholdsSpareRealKeys: every generated key clears the rule's entropy
// threshold and none is taken for a documentation placeholder, for the usual
// prefix and the lowest-entropy prefix there is (twelve times one letter).
func TestThresholdsSpareRealKeys(t *testing.T) {
	r := readRule(t)
	allow := regexp.MustCompile(r.allowlist)
	shape := regexp.MustCompile(r.regex)
	for _, prefix := range []string{"lk", "acme", "tttttttttttt"} {
		for _, env := range []string{"live", "test"} {
			low := math.Inf(1)
			for range 5000 {
				key := newKey(t, prefix, env)
				if m := shape.FindStringSubmatch(key); m == nil || m[1] != key {
					t.Fatalf("a %s_%s key (key ID %s) is not matched whole by the rule's regex", prefix, env, keyID(key))
				}
				if allow.MatchString(key) {
					t.Fatalf("a %s_%s key (key ID %s) matches the placeholder allowlist", prefix, env, keyID(key))
				}
				low = min(low, entropy(key))
			}
			if low <= r.entropy {
				t.Errorf("a %s_%s key has entropy %.2f, not above the threshold %.2f", prefix, env, low, r.entropy)
			}
		}
	}
}

func newKey(t *testing.T, prefix, env string) string {
	t.Helper()
	k, err := credential.NewAPIKey(rand.Reader, prefix, env)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func keyID(s string) string { return credential.KeyID(credential.Hash(s)) }

// fixture is one line of the scanned file.
type fixture struct {
	name string
	// value is what the line holds; reported is the string gitleaks' rule
	// should report (its key-shaped part), "" for none.
	value, reported string
	// kept: the reported string survives leakscan (a real key).
	kept bool
}

// fixtures: the real key and look-alikes. Several embed a valid key, so that it is
// the pattern's boundaries, not the checksum, that must leave it out.
func fixtures(t *testing.T) []fixture {
	t.Helper()
	real := newKey(t, "lk", "live")
	typo := []byte(newKey(t, "acme", "test"))
	last := len(typo) - 1
	if typo[last] == 'A' {
		typo[last] = 'B'
	} else {
		typo[last] = 'A'
	}
	valid := func() string { return newKey(t, "lk", "live") }
	extended := "x9" + valid() // "x9lk" is a prefix too: key-shaped, its checksum is wrong
	halfPlaceholder := "lk_live_XXXXXXXXXX" + valid()[len("lk_live_")+10:]
	// Not a whole alphabet: gitleaks' global stopword abcdefghijklmnopqrstuvwxyz
	// (matched case-insensitively) would drop it before the rule's allowlist does.
	docRun := "lk_test_0123456789ABCDEFGHIJzyxwvutsrqponmlkPQRSTUVWXYZab"
	fs := []fixture{
		{name: "real key", value: real, reported: real, kept: true},
		{name: "wrong checksum", value: string(typo), reported: string(typo)},
		{name: "prefix extended by a word", value: extended, reported: extended},
		{name: "after an underscore", value: "MY_" + valid()},
		{name: "after a digit", value: "9" + valid()},
		{name: "50-character body", value: valid() + "Q"},
		{name: "wrong environment", value: strings.Replace(valid(), "_live_", "_prod_", 1)},
		{name: "upper-case prefix", value: "LK" + strings.TrimPrefix(valid(), "lk")},
		{name: "placeholder", value: "lk_live_" + strings.Repeat("X", 49)},
		{name: "half placeholder", value: halfPlaceholder},
		{name: "documentation run", value: docRun},
		{name: "repeated abcdef", value: "lk_live_" + strings.Repeat("abcdef", 9)[:49]},
	}
	if _, err := credential.ParseAPIKey(string(typo)); err == nil {
		t.Fatal("the wrong-checksum fixture parses as a key")
	}
	// The allowlist, not the entropy threshold, is what must leave these out.
	r := readRule(t)
	for _, s := range []string{halfPlaceholder, docRun} {
		if entropy(s) <= r.entropy || !regexp.MustCompile(r.regex).MatchString(s) {
			t.Fatalf("fixture %s must match the regex and clear the entropy threshold (%.2f)", keyID(s), entropy(s))
		}
	}
	return fs
}

// writeFixtures writes the fixtures, one `name = value` line each (names free of
// the words gitleaks' generic-api-key rule looks for), but the real key, which is
// written as LATCHKEY_API_KEY=..., as it would be: the generic rule matches that
// line too, and gitleaks must keep only latchkey-api-key's finding of it.
func writeFixtures(t *testing.T, dir string, fs []fixture) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# deployment settings\n")
	for i, f := range fs {
		if i == 0 {
			b.WriteString("LATCHKEY_API_KEY=" + f.value + "\n")
			continue
		}
		b.WriteString("sample_" + strings.ReplaceAll(f.name, " ", "_") + ` = "` + f.value + "\"\n")
	}
	if err := os.WriteFile(filepath.Join(dir, fixtureFile), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// describe names a secret by fixture, never by value.
func describe(fs []fixture, secret string) string {
	for _, f := range fs {
		if f.reported == secret || f.value == secret {
			return f.name
		}
	}
	for _, f := range fs {
		if strings.Contains(f.value, secret) {
			return "part of the " + f.name + " fixture, key ID " + keyID(secret)
		}
	}
	return "an unknown string, key ID " + keyID(secret)
}

// scan runs gitleaks SUBCOMMAND over path with gitleaks.toml and returns its
// report, checked to be the expected findings before and after leakscan.
func scan(t *testing.T, fs []fixture, env []string, args ...string) []leakscan.Finding {
	t.Helper()
	config, err := filepath.Abs(tomlFile)
	if err != nil {
		t.Fatal(err)
	}
	findings, log := runGitleaks(t, "", config, env, args...)

	// gitleaks' own findings: the key-shaped fixtures, by latchkey-api-key alone.
	var got, want []string
	for _, f := range findings {
		got = append(got, f.RuleID+": "+describe(fs, f.Secret))
	}
	for _, f := range fs {
		if f.reported != "" {
			want = append(want, leakscan.RuleID+": "+f.name)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("gitleaks %s found\n  %s\nwant\n  %s\n(gitleaks' log:\n%s)", args[0],
			strings.Join(got, "\n  "), strings.Join(want, "\n  "), log)
	}
	for _, f := range findings {
		if filepath.Base(f.File) != fixtureFile {
			t.Errorf("gitleaks %s: finding in %q, want %s", args[0], f.File, fixtureFile)
		}
	}

	// After leakscan: the real key alone.
	kept, dropped, err := leakscan.Filter(findings)
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 || kept[0].KeyID() != keyID(fs[0].value) || dropped != len(findings)-1 {
		var names []string
		for _, f := range kept {
			names = append(names, describe(fs, f.Secret))
		}
		t.Fatalf("gitleaks %s, then leakscan: kept %q (dropped %d), want the real key alone", args[0], names, dropped)
	}
	if kept[0].StartLine != 2 {
		t.Errorf("gitleaks %s: the real key is reported at line %d, want 2", args[0], kept[0].StartLine)
	}

	// What check-leaks prints names the key by its ID, and holds no fixture.
	var lines, js bytes.Buffer
	if err := leakscan.WriteLines(&lines, kept); err != nil {
		t.Fatal(err)
	}
	if err := leakscan.WriteJSON(&js, kept); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(lines.String(), fixtureFile+":2 "+leakscan.RuleID+" keyID="+keyID(fs[0].value)+" commit=") {
		t.Errorf("check-leaks' line: %s", lines.String())
	}
	if !strings.Contains(js.String(), `"KeyID": "`+keyID(fs[0].value)+`"`) {
		t.Errorf("check-leaks -o json has no KeyID of the real key:\n%s", js.String())
	}
	for _, f := range fs {
		if strings.Contains(lines.String()+js.String(), f.value) {
			t.Fatalf("check-leaks' output holds the %s fixture", f.name) // never print it
		}
	}
	return kept
}

// runGitleaks runs gitleaks SUBCOMMAND in dir ("": here) with config and returns
// its report and its log (never --verbose: gitleaks logs no secret then).
func runGitleaks(t *testing.T, dir, config string, env []string, args ...string) ([]leakscan.Finding, string) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	cmd := exec.Command(gitleaks(t), append(args, "--config", config, "--report-format", "json", "--report-path", report,
		"--exit-code", "0", "--no-banner", "--log-level", "warn")...)
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gitleaks %s: %v\n%s", args[0], err, stderr.String())
	}
	f, err := os.Open(report)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	findings, err := leakscan.ReadReport(f)
	if err != nil {
		t.Fatalf("gitleaks %s's report: %v", args[0], err)
	}
	return findings, stderr.String()
}

func gitEnv(t *testing.T) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Latchkey Test", "GIT_AUTHOR_EMAIL=test@latchkey.invalid",
		"GIT_COMMITTER_NAME=Latchkey Test", "GIT_COMMITTER_EMAIL=test@latchkey.invalid")
}

func git(t *testing.T, env []string, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestGitleaksGitHistory: a key committed, then removed, is still found in the
// history, with the commit that added it.
func TestGitleaksGitHistory(t *testing.T) {
	fs := fixtures(t)
	env := gitEnv(t)
	repo := t.TempDir()
	git(t, env, repo, "init", "--quiet", "--initial-branch=main")
	writeFixtures(t, repo, fs)
	git(t, env, repo, "add", fixtureFile)
	git(t, env, repo, "commit", "--quiet", "-m", "deployment settings")
	added := git(t, env, repo, "rev-parse", "HEAD")
	if err := os.WriteFile(filepath.Join(repo, fixtureFile), []byte("# moved to a Secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	git(t, env, repo, "commit", "--quiet", "-am", "remove the key")

	kept := scan(t, fs, env, "git", repo)
	if kept[0].Commit != added {
		t.Errorf("the real key is reported in commit %q, want %s (the commit that added it)", kept[0].Commit, added)
	}
}

// TestGitleaksDirectory: the same file in a plain directory (gitleaks dir).
func TestGitleaksDirectory(t *testing.T) {
	fs := fixtures(t)
	dir := t.TempDir()
	writeFixtures(t, dir, fs)
	kept := scan(t, fs, gitEnv(t), "dir", dir)
	if kept[0].Commit != "" {
		t.Errorf("gitleaks dir reports a commit: %q", kept[0].Commit)
	}
}
