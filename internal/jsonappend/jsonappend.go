// Package jsonappend writes the few fixed JSON shapes of the hot paths (an
// access token's claims, the token endpoint's answer) without reflection: the
// token endpoint spent a third of its own time, signature aside, in
// encoding/json (make bench's profiles, issue 25). What it appends is byte for
// byte what encoding/json's Marshal writes for the same values (the tests of
// each shape compare the two), HTML escaping included.
package jsonappend

import (
	"strconv"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// asIs are the bytes String copies as they are: ASCII but control characters,
// '"', '\\' and the HTML-sensitive '<', '>' and '&' (encoding/json's htmlSafeSet).
// A table: one load per byte of a token, not six comparisons.
var asIs = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = true
	}
	for _, c := range []byte{'"', '\\', '<', '>', '&'} {
		t[c] = false
	}
	return t
}()

// asIsWords is how many of s's first bytes, in whole words of 8, are all asIs,
// tested 8 at a time (SWAR): a token's ~700 bytes cost a fraction of the table's
// loads and branches (BenchmarkStringOfAToken). String then goes on byte by byte.
func asIsWords(s string) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		// (v-ones)&^v&highs is non-zero exactly when v has a zero byte; with
		// 0x20*ones, when x has a byte below 0x20 (a control character).
		quote, backslash := x^'"'*ones, x^'\\'*ones
		lt, gt, amp := x^'<'*ones, x^'>'*ones, x^'&'*ones
		special := x&highs | // not ASCII
			(x-0x20*ones)&^x&highs |
			(quote-ones)&^quote&highs | (backslash-ones)&^backslash&highs |
			(lt-ones)&^lt&highs | (gt-ones)&^gt&highs | (amp-ones)&^amp&highs
		if special != 0 {
			break
		}
	}
	return i
}

// String appends s as a JSON string, escaped as encoding/json escapes it.
func String(b []byte, s string) []byte {
	return append(escaped(append(b, '"'), s), '"')
}

// escaped appends s's characters as they are inside a JSON string, escaped as
// encoding/json escapes them: String without the quotes.
func escaped(b []byte, s string) []byte {
	start := 0
	for i := asIsWords(s); i < len(s); {
		c := s[i]
		if asIs[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default: // other control characters, and <, > and & (HTML-safe, as encoding/json)
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// Object appends an object's members in order: a member is written after a
// comma unless it is the first.
type Object struct {
	B []byte
	n int
}

// Open starts an object on b.
func Open(b []byte) Object { return Object{B: append(b, '{')} }

// Close ends the object and returns the bytes.
func (o *Object) Close() []byte { return append(o.B, '}') }

// Key appends a member's name (a constant the caller knows needs no escaping) and the colon.
func (o *Object) Key(name string) {
	if o.n > 0 {
		o.B = append(o.B, ',')
	}
	o.n++
	o.B = append(o.B, '"')
	o.B = append(o.B, name...)
	o.B = append(o.B, '"', ':')
}

// String appends a string member; with omitEmpty, none if value is "".
func (o *Object) String(name, value string, omitEmpty bool) {
	if omitEmpty && value == "" {
		return
	}
	o.Key(name)
	o.B = String(o.B, value)
}

// Int appends an integer member; with omitEmpty, none if value is 0.
func (o *Object) Int(name string, value int64, omitEmpty bool) {
	if omitEmpty && value == 0 {
		return
	}
	o.Key(name)
	o.B = strconv.AppendInt(o.B, value, 10)
}

// StringOrStrings appends a member that is one string when values has one, an
// array when it has more, and no member when it has none: how go-jose's
// jwt.Audience marshals (RFC 7519 §4.1.3's aud).
func (o *Object) StringOrStrings(name string, values []string) {
	switch len(values) {
	case 0:
	case 1:
		o.String(name, values[0], false)
	default:
		o.Key(name)
		o.B = Strings(o.B, values)
	}
}

// Strings appends value as a JSON array of strings.
func Strings(b []byte, value []string) []byte {
	b = append(b, '[')
	for i, s := range value {
		if i > 0 {
			b = append(b, ',')
		}
		b = String(b, s)
	}
	return append(b, ']')
}
