package accesstoken

import "testing"

func TestAccessTokenType(t *testing.T) {
	for typ, want := range map[any]bool{
		"at+jwt": true, "AT+JWT": true, "application/at+jwt": true, "Application/AT+JWT": true,
		"JWT": false, "jwt": false, "": false, "application/jwt": false, nil: false, 1: false,
	} {
		if accessTokenType(typ) != want {
			t.Errorf("accessTokenType(%v) = %v, want %v", typ, !want, want)
		}
	}
}
