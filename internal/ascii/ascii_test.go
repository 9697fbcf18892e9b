package ascii

import "testing"

func TestOnlyASCIILettersChangeCase(t *testing.T) {
	for _, c := range []struct {
		a, b  string
		equal bool
	}{
		{"x-api-key", "X-API-KEY", true},
		{"Bearer", "bEARER", true},
		{"x-api-\u212Aey", "x-api-key", false}, // a Kelvin sign is not k
		{"po\u017Ft", "POST", false},           // a long s is not s
		{"ab", "abc", false},
		{"a\xff", "A\xff", true}, // other bytes compare as they are
	} {
		if got := EqualFold(c.a, c.b); got != c.equal {
			t.Errorf("EqualFold(%q, %q) = %v", c.a, c.b, got)
		}
	}
	if !HasPrefixFold("Basic abc", "basic ") || HasPrefixFold("Basi", "basic ") || HasPrefixFold("\u212Aey", "key") {
		t.Error("HasPrefixFold matches beyond ASCII case, or misses it")
	}
	for in, want := range map[string]string{"post": "POST", "GET": "GET", "po\u017Ft": "PO\u017FT", "g\u0435t": "G\u0435T", "": ""} {
		if got := ToUpper(in); got != want {
			t.Errorf("ToUpper(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { _ = ToUpper("DELETE") }); n != 0 {
		t.Errorf("ToUpper of an upper-case method allocated %v times", n)
	}
}
