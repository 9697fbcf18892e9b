// Command echo is the upstream service of `make demo`: behind Caddy and the
// authorizer, it answers every request with the X-Latchkey-* identity headers it
// received, as JSON, so the demo can show what a resource server learns about its
// caller without writing any code.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strings"
	"time"
)

func main() {
	addr := flag.String("listen-address", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		identity := map[string]string{}
		for name, values := range r.Header {
			if strings.HasPrefix(name, "X-Latchkey-") {
				identity[name] = strings.Join(values, ",")
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			Method  string            `json:"method"`
			Path    string            `json:"path"`
			Headers map[string]string `json:"headers"`
		}{r.Method, r.URL.RequestURI(), identity})
	})
	srv := &http.Server{Addr: *addr, Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("echo: listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}
