// Package tokenserver is the HTTP server that issues access tokens to OAuthClients
// and verifies API keys and tokens for resource servers.
package tokenserver
