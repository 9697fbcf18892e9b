// Package index answers, from memory, the questions the data plane asks of every
// request: is this API key accepted (a checksum, one SHA-256 and one map lookup),
// which OAuthClient has this client_id and does its secret match, who does this
// access token still act for (its client, and for a third-party app its grant and
// refresh-token family), which API is served under this name or Host and which
// rule applies to a path, and whether a user already consented to an app.
//
// It holds only what those answers need, per kind, replaced wholesale on every
// change: hashes, never a plaintext credential. It neither watches nor writes: the
// watchfeed package feeds it from the API server, the lastused package records the
// uses it reports, and the serve package starts both for a process. Lookups take a
// read lock and allocate nothing; writes (one object's change) take the write lock
// for the time of a few map operations.
package index
