// The authorization_code flow as a third-party Node app would run it with
// openid-client 6: discovery, PKCE (S256), state, the RFC 9207 iss check, the code
// exchange and a refresh. The browser part is not ours: this script prints the
// authorization URL, then reads the URL the browser was sent back to from stdin.
//
// Usage: node flow.mjs <issuer> <client_id> <client_secret> <redirect_uri> <scope>
// Output: one JSON line {"authorize": url}, then one JSON line with the tokens.
import * as client from 'openid-client';
import { createInterface } from 'node:readline';

const [issuer, clientId, clientSecret, redirectUri, scope] = process.argv.slice(2);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

// The suite's token server speaks plain HTTP on loopback; production needs TLS.
const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests],
});
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const authorize = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope,
  state,
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
});
console.log(JSON.stringify({ authorize: authorize.href }));

const callback = (await lines.next()).value;
const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
  pkceCodeVerifier: verifier,
  expectedState: state,
});
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
console.log(JSON.stringify({
  access_token: tokens.access_token,
  refresh_token: tokens.refresh_token,
  scope: tokens.scope,
  refreshed_access_token: refreshed.access_token,
  refreshed_refresh_token: refreshed.refresh_token,
}));
process.exit(0);
