package jsonappend

import (
	"encoding/json"
	"strings"
	"testing"
)

// String writes what encoding/json writes, for every kind of character it treats apart.
func TestStringIsEncodingJSONs(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "\b\f\n\r\t", "\x00\x01\x1f\x7f", "<script>&amp;</script>",
		"é ü 世界 🔑", "\u2028\u2029", "bad \xff utf-8 \xc3", "https://api.example/v1?a=1&b=2", "latchkey.dev/namespace",
	} {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Errorf("String(%q) = %s, want %s", s, got, want)
		}
	}
}

// String's 8-byte scan hands over to its byte loop wherever in a word the first
// byte to escape stands, and in whichever word.
func TestStringEscapesInEveryLane(t *testing.T) {
	for _, c := range []string{"\"", "\\", "<", ">", "&", "\x00", "\x1f", "\x7f", "é", "\xff", "\u2028"} {
		for at := range 24 {
			s := strings.Repeat("a", at) + c + strings.Repeat("b", 20)
			want, _ := json.Marshal(s)
			if got := String(nil, s); string(got) != string(want) {
				t.Errorf("String(%q) = %s, want %s", s, got, want)
			}
		}
	}
}

func FuzzStringIsEncodingJSONs(f *testing.F) {
	f.Add("a<b>\"\\\x00\xff\u2028")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := String(nil, s); string(got) != string(want) {
			t.Fatalf("String(%q) = %s, want %s", s, got, want)
		}
	})
}

// An access token in a token response, the longest string the hot paths write.
func BenchmarkStringOfAToken(b *testing.B) {
	token := strings.Repeat("eyJhbGciOiJFZERTQSIsImtpZCI6Ik_-", 14)
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(token)))
	for b.Loop() {
		buf = String(buf[:0], token)
	}
}
