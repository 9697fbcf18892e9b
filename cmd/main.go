// Command latchkey is the one binary of the project: `latchkey manager` runs the
// operator, `latchkey tokenserver` the token server, `latchkey authz` the edge authorizer.
package main

import (
	"fmt"
	"os"

	// Mozilla's root CAs, used only where the system has none: the image is FROM
	// scratch, and the token server still verifies its upstream OpenID provider.
	_ "golang.org/x/crypto/x509roots/fallback"
)

const usage = `usage: latchkey <command> [flags]

commands:
  manager      reconcile APIKeys and OAuthClients into hashed credentials and Secrets
  tokenserver  issue and verify access tokens from the reconciled state
  authz        edge authorizer: Envoy ext_authz (gRPC) and HTTP forward-auth for proxies

Run "latchkey <command> -h" for the flags of a command.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "manager":
		err = runManager(os.Args[2:])
	case "tokenserver":
		err = runTokenServer(os.Args[2:])
	case "authz":
		err = runAuthz(os.Args[2:])
	case "-h", "--help", "help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "latchkey: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "latchkey %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
