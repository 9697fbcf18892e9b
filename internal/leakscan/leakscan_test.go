package leakscan

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/latchkey-dev/latchkey/internal/credential"
)

func newKey(t *testing.T) string {
	t.Helper()
	k, err := credential.NewAPIKey(rand.Reader, "lk", "live")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// typo changes a key's last character: the shape holds, the checksum does not.
func typo(key string) string {
	c := byte('A')
	if key[len(key)-1] == 'A' {
		c = 'B'
	}
	return key[:len(key)-1] + string(c)
}

func keyID(s string) string { return credential.KeyID(credential.Hash(s)) }

// report builds a gitleaks JSON report as v8.30.1 writes it.
func report(t *testing.T, findings ...map[string]any) string {
	t.Helper()
	for _, f := range findings {
		for k, v := range map[string]any{
			"Description": "d", "StartLine": 3, "EndLine": 3, "StartColumn": 1, "EndColumn": 60,
			"File": "app/.env", "SymlinkFile": "", "Commit": "", "Entropy": 4.9, "Author": "", "Email": "",
			"Date": "", "Message": "", "Tags": []string{}, "Fingerprint": "app/.env:x:3",
		} {
			if _, ok := f[k]; !ok {
				f[k] = v
			}
		}
		if _, ok := f["Match"]; !ok {
			f["Match"] = "KEY=" + f["Secret"].(string)
		}
	}
	b, err := json.Marshal(findings)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadReport(t *testing.T) {
	for _, empty := range []string{"null", "null\n", "[]", " [ ] \n"} {
		fs, err := ReadReport(strings.NewReader(empty))
		if err != nil || len(fs) != 0 {
			t.Errorf("ReadReport(%q) = %d findings, %v; want none", empty, len(fs), err)
		}
	}
	key := newKey(t)
	fs, err := ReadReport(strings.NewReader(report(t,
		map[string]any{"RuleID": RuleID, "Secret": key, "Commit": "0123456789abcdef0123456789abcdef01234567", "StartLine": 7},
		map[string]any{"RuleID": "other-rule", "Secret": "other-rule-secret"})))
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 2 || fs[0].RuleID != RuleID || fs[0].StartLine != 7 || fs[0].File != "app/.env" ||
		fs[0].Commit != "0123456789abcdef0123456789abcdef01234567" || fs[0].Secret != key || fs[1].RuleID != "other-rule" {
		t.Errorf("ReadReport decoded %d findings, not as written", len(fs))
	}
}

func TestReadReportRejects(t *testing.T) {
	key := newKey(t)
	for name, in := range map[string]string{
		"empty":              "",
		"an object":          `{"RuleID": "x"}`,
		"two values":         `[] []`,
		"garbage after":      `[]x`,
		"a finding no rule":  `[{"Secret": "` + key + `"}]`,
		"a non-object":       `[1]`,
		"a wrong field type": `[{"RuleID": "x", "StartLine": "three"}]`,
		"verbose output":     "Finding: KEY=" + key + "\n[]",
	} {
		_, err := ReadReport(strings.NewReader(in))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(err.Error(), key) {
			t.Errorf("%s: the error holds the key", name)
		}
	}
}

func TestFilter(t *testing.T) {
	real, bad := newKey(t), typo(newKey(t))
	fs, err := ReadReport(strings.NewReader(report(t,
		map[string]any{"RuleID": RuleID, "Secret": bad},
		map[string]any{"RuleID": RuleID, "Secret": real},
		map[string]any{"RuleID": "generic-api-key", "Secret": "hunter2hunter2"},
		map[string]any{"RuleID": RuleID, "Secret": "acme_test_" + strings.Repeat("x", 49)})))
	if err != nil {
		t.Fatal(err)
	}
	kept, dropped, err := Filter(fs)
	if err != nil {
		t.Fatal(err)
	}
	if dropped != 2 || len(kept) != 2 || kept[0].KeyID() != keyID(real) || kept[1].RuleID != "generic-api-key" {
		t.Fatalf("Filter kept %d (want the real key and the other rule's finding, in order), dropped %d (want 2)", len(kept), dropped)
	}
	if kept, dropped, err := Filter(nil); err != nil || len(kept) != 0 || dropped != 0 {
		t.Errorf("Filter(nil) = %d, %d, %v", len(kept), dropped, err)
	}
}

// A finding of the rule without a key to check is an error, never a silent drop:
// gitleaks --redact, or another rule under the id.
func TestFilterRejectsUncheckable(t *testing.T) {
	key := newKey(t)
	for _, secret := range []string{"REDACTED", key[:20] + "...", "lk_live_" + strings.Repeat("a", 48), "x" + key + "y", ""} {
		fs := []Finding{{RuleID: RuleID, File: "a.env", StartLine: 2, Secret: secret}}
		_, _, err := Filter(fs)
		if err == nil || !strings.Contains(err.Error(), "a.env:2") {
			t.Errorf("Filter of an uncheckable secret: %v; want an error naming a.env:2", err)
		} else if strings.Contains(err.Error(), key[:20]) {
			t.Errorf("the error holds the secret")
		}
	}
}

func TestKeyID(t *testing.T) {
	key := newKey(t)
	if got := (Finding{RuleID: RuleID, Secret: key}).KeyID(); got != keyID(key) || len(got) != 12 {
		t.Errorf("KeyID = %q, want %q", got, keyID(key))
	}
	if got := (Finding{RuleID: "generic-api-key", Secret: "hunter2"}).KeyID(); got != "" {
		t.Errorf("KeyID of another rule's finding = %q, want none", got)
	}
}

func TestWriteLines(t *testing.T) {
	key := newKey(t)
	fs := []Finding{
		{RuleID: RuleID, File: "app/.env", StartLine: 3, Commit: "0123456789abcdef0123456789abcdef01234567", Secret: key},
		{RuleID: "other-rule", File: "main.tf", StartLine: 9, Secret: "other-rule-secret"},
	}
	var out bytes.Buffer
	if err := WriteLines(&out, fs); err != nil {
		t.Fatal(err)
	}
	want := "app/.env:3 " + RuleID + " keyID=" + keyID(key) + " commit=0123456789ab\n" +
		"main.tf:9 other-rule keyID=- commit=-\n"
	if out.String() != want {
		t.Errorf("WriteLines:\n%s\nwant\n%s", out.String(), want)
	}
	if strings.Contains(out.String(), key) || strings.Contains(out.String(), "other-rule-secret") {
		t.Error("WriteLines wrote a secret")
	}
}

func TestWriteJSON(t *testing.T) {
	key := newKey(t)
	in := report(t,
		map[string]any{"RuleID": RuleID, "Secret": key, "Line": "export KEY=" + key, "Fragment": map[string]any{"Raw": key},
			"Link": "https://example.com/blob/abc/app/.env#L3"},
		map[string]any{"RuleID": "other-rule", "Secret": "other-rule-secret", "KeyID": "forged"})
	fs, err := ReadReport(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteJSON(&out, fs); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), key) || strings.Contains(out.String(), "other-rule-secret") {
		t.Fatal("WriteJSON wrote a secret")
	}
	var got []map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 2 {
		t.Fatalf("WriteJSON wrote no report of 2 findings: %v", err)
	}
	for i, f := range got {
		if f["Secret"] != Redacted || f["Match"] != Redacted {
			t.Errorf("finding %d: Secret and Match not %s", i, Redacted)
		}
		if _, ok := f["Line"]; ok {
			t.Errorf("finding %d: Line written", i)
		}
		if _, ok := f["Fragment"]; ok {
			t.Errorf("finding %d: Fragment written", i)
		}
		if f["File"] != "app/.env" || f["StartLine"] != float64(3) || f["Fingerprint"] != "app/.env:x:3" {
			t.Errorf("finding %d: fields not kept as gitleaks wrote them: %v %v %v", i, f["File"], f["StartLine"], f["Fingerprint"])
		}
	}
	if got[0]["KeyID"] != keyID(key) || got[0]["Link"] != "https://example.com/blob/abc/app/.env#L3" {
		t.Errorf("the key's finding: KeyID %v, Link %v", got[0]["KeyID"], got[0]["Link"])
	}
	if _, ok := got[1]["KeyID"]; ok {
		t.Error("another rule's finding has a KeyID (one written in the report is not passed on)")
	}
	// Nothing found: an empty array, which gitleaks itself reads back.
	out.Reset()
	if err := WriteJSON(&out, nil); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("WriteJSON(nil) = %q, %v; want []", out.String(), err)
	}
}

// The filter's shape is the key format ParseAPIKey checks.
func TestSecretPatternIsTheKeyShape(t *testing.T) {
	for range 1000 {
		if key := newKey(t); !keyShape.MatchString(key) {
			t.Fatalf("a generated key (key ID %s) does not match SecretPattern", keyID(key))
		}
	}
	for _, s := range []string{"lk_prod_" + strings.Repeat("a", 49), "Lk_live_" + strings.Repeat("a", 49),
		"lk_live_" + strings.Repeat("a", 48), "lk_live_" + strings.Repeat("a", 50), "abcdefghijklm_live_" + strings.Repeat("a", 49),
		"1k_live_" + strings.Repeat("a", 49), "lk_live_" + strings.Repeat("a", 48) + "-"} {
		if keyShape.MatchString(s) {
			t.Errorf("SecretPattern matches %q", s)
		}
	}
}
