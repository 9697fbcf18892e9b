// Package leakscan filters a gitleaks report down to the Latchkey API keys that are
// real: well-formed with a valid checksum. Gitleaks rules are a regular expression
// and an entropy threshold, nothing more (gitleaks/gitleaks#1456, "Declare API keys
// with checksums", is open), so config/scanning/gitleaks.toml's rule also reports a
// key-shaped string whose checksum is wrong: a typo, a truncated copy, a made-up
// example. `kubectl latchkey check-leaks` drops those, keeps every finding of other
// rules as it is, and prints what is left without the secrets.
package leakscan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/latchkey-dev/latchkey/internal/credential"
)

const (
	// RuleID is the id of the rule in config/scanning/gitleaks.toml.
	RuleID = "latchkey-api-key"

	// SecretPattern is the shape of an API key (internal/credential): prefix, "_",
	// environment, "_", 43 base62 characters of body and 6 of checksum. It is the
	// rule's secret group in config/scanning/gitleaks.toml and the secret format of
	// config/scanning/github-custom-pattern.md, character for character (the test of
	// config/scanning checks it). It uses only what Go's regexp (gitleaks) and
	// Hyperscan (GitHub) both accept.
	SecretPattern = `[a-z][a-z0-9]{0,11}_(?:live|test)_[0-9A-Za-z]{49}`

	// Redacted replaces a secret in the JSON that WriteJSON writes, as gitleaks'
	// own --redact does.
	Redacted = "REDACTED"
)

var keyShape = regexp.MustCompile(`^(?:` + SecretPattern + `)$`)

// Finding is one element of a gitleaks JSON report (--report-format json): the
// fields the filter reads, and every field as gitleaks wrote it, so that the
// kept findings are written back whole.
type Finding struct {
	RuleID      string
	File        string
	StartLine   int
	Commit      string
	Fingerprint string
	// Secret is what the rule captured; for RuleID, the key.
	Secret string
	// Match is all the rule's regular expression matched.
	Match string

	raw map[string]json.RawMessage
}

// ReadReport decodes a gitleaks JSON report: an array of findings, or null
// (gitleaks writes null when it found nothing).
func ReadReport(r io.Reader) ([]Finding, error) {
	var elems []json.RawMessage
	dec := json.NewDecoder(r)
	if err := dec.Decode(&elems); err != nil {
		// json's error names a position and a type, never the input.
		return nil, fmt.Errorf("not a gitleaks JSON report (gitleaks --report-format json, without --verbose, "+
			"which prints the findings before the report): %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("not a gitleaks JSON report: more than one JSON value")
	}
	findings := make([]Finding, 0, len(elems))
	for i, elem := range elems {
		var f Finding
		if err := json.Unmarshal(elem, &f); err != nil {
			return nil, fmt.Errorf("finding %d of the report: %w", i+1, err)
		}
		if err := json.Unmarshal(elem, &f.raw); err != nil {
			return nil, fmt.Errorf("finding %d of the report: %w", i+1, err)
		}
		if f.RuleID == "" {
			return nil, fmt.Errorf("finding %d of the report has no RuleID: not a gitleaks JSON report", i+1)
		}
		findings = append(findings, f)
	}
	return findings, nil
}

// Filter keeps the findings of RuleID whose secret is a well-formed Latchkey API
// key (credential.ParseAPIKey: shape and checksum) and every finding of other rules;
// it returns how many it dropped. A finding of RuleID whose secret is not
// key-shaped at all cannot be checked, and is an error rather than a silent drop:
// gitleaks was run with --redact, or with another rule under the same id.
func Filter(findings []Finding) (kept []Finding, dropped int, err error) {
	for _, f := range findings {
		if f.RuleID != RuleID {
			kept = append(kept, f)
			continue
		}
		if !keyShape.MatchString(f.Secret) {
			return nil, 0, fmt.Errorf("%s: the %s finding has no key to check (was gitleaks run with --redact?)", f.location(), RuleID)
		}
		if _, err := credential.ParseAPIKey(f.Secret); err != nil {
			dropped++
			continue
		}
		kept = append(kept, f)
	}
	return kept, dropped, nil
}

// KeyID is the key ID of a RuleID finding (credential.KeyID of its hash), as the
// APIKey's status and `kubectl latchkey status` show it; "" for other rules, whose
// secrets may be guessable (a password), so that nothing derived from them is shown.
func (f Finding) KeyID() string {
	if f.RuleID != RuleID {
		return ""
	}
	return credential.KeyID(credential.Hash(f.Secret))
}

func (f Finding) location() string {
	return fmt.Sprintf("%s:%d", f.File, f.StartLine)
}

// WriteLines writes one line per finding, never its secret:
//
//	FILE:LINE RULE keyID=<key ID> commit=<short SHA>
//
// with "-" for a key ID of another rule and for a finding outside a commit
// (gitleaks dir, or git --staged).
func WriteLines(w io.Writer, findings []Finding) error {
	for _, f := range findings {
		id, commit := f.KeyID(), f.Commit
		if id == "" {
			id = "-"
		}
		if commit == "" {
			commit = "-"
		} else if len(commit) > 12 {
			commit = commit[:12]
		}
		if _, err := fmt.Fprintf(w, "%s %s keyID=%s commit=%s\n", f.location(), f.RuleID, id, commit); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSON writes the findings as a gitleaks JSON report, every field as gitleaks
// wrote it but Secret and Match, which are Redacted (as gitleaks' own --redact
// writes them), and with a KeyID field added to the findings of RuleID. Line and
// Fragment, which hold the text around a secret, are left out should a gitleaks
// version write them (v8.30.1 does not).
func WriteJSON(w io.Writer, findings []Finding) error {
	out := make([]map[string]json.RawMessage, 0, len(findings))
	redacted, err := json.Marshal(Redacted)
	if err != nil {
		return err
	}
	for _, f := range findings {
		obj := make(map[string]json.RawMessage, len(f.raw)+1)
		for k, v := range f.raw {
			switch strings.ToLower(k) {
			case "secret", "match":
				obj[k] = redacted
			case "line", "fragment", "keyid":
			default:
				obj[k] = v
			}
		}
		if id := f.KeyID(); id != "" {
			if obj["KeyID"], err = json.Marshal(id); err != nil {
				return err
			}
		}
		out = append(out, obj)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	return enc.Encode(out)
}
