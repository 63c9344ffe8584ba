// Package e2e holds hearth's end-to-end tests: a real Ollama built from the Go module proxy with
// tiny random-weight models, the hearth binary built from this tree, and real clients (the ollama
// CLI, go-openai, Ollama's Go client, the openai npm SDK) talking to `hearth agent`. TestCluster
// adds a home of three agents in one gossip cluster: two with their own Ollama, one that only routes.
// TestRelayOllamaCLI puts `hearth relay` (with a certificate for relay.test from an in-process
// Pebble) and an agent's frp tunnel between the ollama CLI, signing with OLLAMA_AUTH=1, and Ollama.
//
// The tests carry the build tag e2e, so `go test ./...` skips them. Run them with e2e/run.sh
// (or `make e2e`), which first runs e2e/setup.sh. Nothing outside this package imports it.
package e2e
