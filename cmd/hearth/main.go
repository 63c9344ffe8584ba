// Command hearth is the home-lab edge appliance for self-hosted LLMs: one binary that runs as
// an agent on every home machine, as a relay on a VPS, and as the operator's command line.
// main parses flags, loads config, builds the role and runs it; it is the only place that
// exits the process.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var silent silentError
		if !errors.As(err, &silent) {
			fmt.Fprintln(os.Stderr, "hearth:", err)
		}
		os.Exit(1)
	}
}

// silentError is an error already reported to the user.
type silentError struct{ error }
