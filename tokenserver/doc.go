// Package tokenserver is the HTTP server that issues access tokens to
// OAuthClients and verifies API keys and tokens for resource servers: the token
// endpoint (client_credentials here; authorization_code and refresh_token in
// package thirdparty, behind the same endpoint), introspection, revocation, the
// JWKS and the metadata. Every request is admitted fairly by caller
// (admission.go, package flowcontrol) before it is served.
//
// Its only source of truth is the Kubernetes API server, read through watch
// caches (package serve starts them: the index, fed by package watchfeed) of
// APIKeys, OAuthClients, APIs and OAuthGrants (hashes only) and of the one
// signing-key Secret. It never reads the Secrets that hold plaintext credentials.
// Package oauth is the vocabulary its endpoints share.
package tokenserver
