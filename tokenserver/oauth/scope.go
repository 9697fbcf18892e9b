package oauth

import (
	"slices"
	"strings"
)

// ParseScope splits a scope parameter as RFC 6749 §3.3 defines it: tokens of
// %x21 / %x23-5B / %x5D-7E separated by spaces (ASCII space only: no tab, no
// Unicode space), each kept once. It reports false for anything else.
func ParseScope(scope string) ([]string, bool) {
	var tokens []string
	for token := range strings.SplitSeq(scope, " ") {
		if token == "" {
			continue // tolerate doubled or trailing spaces
		}
		for i := 0; i < len(token); i++ {
			if c := token[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				return nil, false
			}
		}
		if !slices.Contains(tokens, token) {
			tokens = append(tokens, token)
		}
	}
	return tokens, len(tokens) > 0
}

// ErrInvalidScopeSyntax answers a scope parameter ParseScope refuses.
var ErrInvalidScopeSyntax = NewError(400, "invalid_scope", "scope must be scope tokens of printable ASCII separated by spaces")

// Subset reports whether every item is in of.
func Subset(items, of []string) bool {
	for _, i := range items {
		if !slices.Contains(of, i) {
			return false
		}
	}
	return true
}

// Union is a with the items of b it lacks, in order.
func Union(a, b []string) []string {
	out := slices.Clone(a)
	for _, v := range b {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Intersect is the items of a that b holds, each once, in a's order.
func Intersect(a, b []string) []string {
	var out []string
	for _, v := range a {
		if slices.Contains(b, v) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Unique is list with each item once, in order.
func Unique(list []string) []string { return Union(nil, list) }
