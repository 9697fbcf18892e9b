// Command failures prints what failed in Ginkgo JSON reports (-ginkgo.json-report):
// each failed spec's name, where it failed and its failure message. The Makefile
// runs it after a suite fails, so that the last lines of a run, which are all a
// CI log may keep, say why and not only where (Ginkgo's own summary gives only
// the location). It prints nothing the suite's own output did not: the specs'
// failure messages, which Ginkgo prints inline too. The specs keep credentials
// out of them (a credential is compared as a boolean or a digest).
//
// Usage: go run ./hack/failures REPORT.json...
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/onsi/ginkgo/v2/types"
)

// maxLines caps each message: enough for a list of failed requests, not a dump.
const maxLines = 40

func main() {
	failed := 0
	for _, path := range os.Args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "failures: %v\n", err)
			continue
		}
		var reports []types.Report
		if err := json.Unmarshal(raw, &reports); err != nil {
			fmt.Fprintf(os.Stderr, "failures: %s: %v\n", path, err)
			continue
		}
		for _, report := range reports {
			for _, spec := range report.SpecReports {
				if !spec.State.Is(types.SpecStateFailureStates) {
					continue
				}
				failed++
				name := spec.FullText()
				if name == "" {
					name = spec.LeafNodeType.String()
				}
				fmt.Printf("=== %s: %s [%s]\n    at %s\n", report.SuiteDescription, name, spec.State, spec.Failure.Location)
				fmt.Println(indent(capLines(spec.Failure.Message, maxLines)))
			}
		}
	}
	if failed == 0 {
		fmt.Println("failures: no failed spec in the reports (the suite failed before or outside its specs)")
	}
}

func capLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("… %d more lines", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
