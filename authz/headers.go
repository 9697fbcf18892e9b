package authz

import (
	"encoding/json"
	"strings"
)

// The identity headers the upstream receives on allow: the contract with resource
// servers. Every one of them is removed from the client's request first, so a
// value the upstream sees was written by the authorizer.
const (
	HeaderSubject     = "X-Latchkey-Subject"
	HeaderKind        = "X-Latchkey-Credential-Kind"
	HeaderNamespace   = "X-Latchkey-Namespace"
	HeaderName        = "X-Latchkey-Name"
	HeaderClientID    = "X-Latchkey-Client-Id"
	HeaderKeyID       = "X-Latchkey-Key-Id"
	HeaderEnvironment = "X-Latchkey-Environment"
	HeaderScopes      = "X-Latchkey-Scopes"
	HeaderAPI         = "X-Latchkey-Api"
)

// IdentityHeaders lists them all, for proxies' copy lists and for removal.
var IdentityHeaders = identityHeaders[:]

var identityHeaders = [...]string{HeaderSubject, HeaderKind, HeaderNamespace, HeaderName, HeaderClientID,
	HeaderKeyID, HeaderEnvironment, HeaderScopes, HeaderAPI}

// identityHeaderCount is len(IdentityHeaders), as a constant (Decision.headers).
const identityHeaderCount = len(identityHeaders)

// lowerIdentityHeaders are identityHeaders in lower case, as gRPC (HTTP/2) names them.
var lowerIdentityHeaders = func() (lower [identityHeaderCount]string) {
	for i, name := range identityHeaders {
		lower[i] = strings.ToLower(name)
	}
	return lower
}()

// identityPrefix begins every identity header's name, lower case.
const identityPrefix = "x-latchkey-"

// imitatesIdentityHeader reports whether a request header's name is an identity
// header's under another spelling: one that only folding '_' into '-' turns into
// "x-latchkey-…". Proxies remove the client's copies of the identity headers by
// their real names only, and Envoy passes names with underscores on by default
// (headers_with_underscores_action: ALLOW), to upstreams where CGI, WSGI, Rack and
// PHP fold '_' and '-' together and read the imitation as the trusted header. Case
// is no disguise: HTTP names are case-insensitive, and proxies match them so.
func imitatesIdentityHeader(name string) bool {
	if len(name) < len(identityPrefix) || !strings.Contains(name, "_") {
		return false
	}
	for i := 0; i < len(identityPrefix); i++ {
		c := name[i]
		if c == '_' {
			c = '-'
		} else if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != identityPrefix[i] {
			return false
		}
	}
	return true
}

// headers are the identity headers of an allowed request, in the order of
// identityHeaders; an empty value means "absent" (an access token has no key
// ID), and proxies drop it.
func (d Decision) headers() [identityHeaderCount][2]string { // an array: no allocation
	id := d.Identity
	return [...][2]string{
		{HeaderSubject, id.Subject}, {HeaderKind, id.Kind}, {HeaderNamespace, id.Namespace},
		{HeaderName, id.Name}, {HeaderClientID, id.ClientID}, {HeaderKeyID, id.KeyID},
		{HeaderEnvironment, id.Environment}, {HeaderScopes, id.Scopes}, {HeaderAPI, d.API},
	}
}

// challenge is the WWW-Authenticate header of a refusal (RFC 6750 §3). A request
// without any credential gets a bare challenge (§3.1).
func (d Decision) challenge(realm string) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="` + realm + `"`)
	if d.Error != "" {
		b.WriteString(`, error="` + d.Error + `"`)
		b.WriteString(`, error_description="` + d.Description + `"`)
	}
	if d.RequiredScope != "" {
		b.WriteString(`, scope="` + d.RequiredScope + `"`)
	}
	return b.String()
}

// body is the JSON body of a refusal.
func (d Decision) body() string {
	code := d.Error
	if code == "" {
		code = "invalid_token"
	}
	b, _ := json.Marshal(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
		Scope       string `json:"scope,omitempty"`
	}{code, d.Description, d.RequiredScope})
	return string(b) + "\n"
}
