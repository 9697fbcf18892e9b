// Command chart writes the generated parts of charts/latchkey (internal/chart):
// `make chart`, run from the repository root.
package main

import (
	"fmt"
	"os"

	"github.com/latchkey-dev/latchkey/internal/chart"
)

func main() {
	files, err := chart.Generate(".")
	if err == nil {
		err = chart.Write(".", files)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}
