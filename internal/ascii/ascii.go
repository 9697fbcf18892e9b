// Package ascii compares and cases HTTP tokens (header names, methods, auth
// schemes) as HTTP does: by ASCII letters only. The strings package maps
// Unicode, where "\u212A" (a Kelvin sign) lowers to "k" and "\u017F" (a long
// s) uppers to "S", so a name or a method the proxy and the upstream take for
// another would be judged as the one it imitates.
package ascii

// EqualFold reports whether a and b are equal but for the case of ASCII letters.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// HasPrefixFold reports whether s begins with prefix, but for the case of
// ASCII letters.
func HasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && EqualFold(s[:len(prefix)], prefix)
}

// ToUpper is s with its ASCII letters in upper case and every other byte as it
// is; s itself, without a copy, when it has no lower-case ASCII letter.
func ToUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if 'a' <= s[i] && s[i] <= 'z' {
			b := []byte(s)
			for ; i < len(b); i++ {
				if 'a' <= b[i] && b[i] <= 'z' {
					b[i] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
