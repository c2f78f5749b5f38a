package main

import (
	"fmt"
	"io"

	"github.com/prometheus/common/version"
)

func init() {
	commands["version"] = command{summary: "print the version", run: runVersion}
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintln(stdout, version.Print("sage"))
	return 0
}
