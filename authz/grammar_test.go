package authz

import (
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// rfc6750B64token is RFC 6750 §2.1's grammar as written, the reference b64token
// is checked against.
var rfc6750B64token = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// The hand-written grammars of the hot path must accept exactly what their
// references do: every string of up to two bytes over every byte, a few long
// and boundary ones, and whatever the fuzzer finds (FuzzGrammarsAgreeWithTheirReferences).
func TestGrammarsAgreeWithTheirReferences(t *testing.T) {
	var inputs []string
	for a := range 256 {
		inputs = append(inputs, string([]byte{byte(a)}))
		for b := range 256 {
			inputs = append(inputs, string([]byte{byte(a), byte(b)}))
		}
	}
	inputs = append(inputs, "", "lk_live_abc=", "lk_live_abc==x", "a.b.c", "a..b", ".a", "a.", "-a", "a-", "a--b", "a.-b",
		"kube-system", "leads.v1", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126)+"a",
		strings.Repeat("a", 253), strings.Repeat("a", 254), strings.Repeat("x", 8192), strings.Repeat("x", 8193))
	for _, s := range inputs {
		checkGrammars(t, s)
	}
}

func FuzzGrammarsAgreeWithTheirReferences(f *testing.F) {
	for _, s := range []string{"", "ns", "a.b-c", "lk_live_x==", "Bearer x", "a..b", "a-.b"} {
		f.Add(s)
	}
	f.Fuzz(checkGrammars)
}

func checkGrammars(t *testing.T, s string) {
	if got, want := dns1123Label(s), len(validation.IsDNS1123Label(s)) == 0; got != want {
		t.Errorf("dns1123Label(%q) = %v, validation.IsDNS1123Label says %v", s, got, want)
	}
	if got, want := dns1123Subdomain(s), len(validation.IsDNS1123Subdomain(s)) == 0; got != want {
		t.Errorf("dns1123Subdomain(%q) = %v, validation.IsDNS1123Subdomain says %v", s, got, want)
	}
	if got, want := b64token(s), len(s) <= 8192 && rfc6750B64token.MatchString(s); got != want {
		t.Errorf("b64token(%q) = %v, RFC 6750's grammar says %v", s, got, want)
	}
}
