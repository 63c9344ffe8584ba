//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestOpenAINodeSDK runs e2e/node/stream.mjs: a streaming chat through the openai npm package,
// the SDK that web apps and many tools use.
func TestOpenAINodeSDK(t *testing.T) {
	s := use(t)
	dir := filepath.Join(s.root, "e2e", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "openai", "package.json")); err != nil {
		t.Fatalf("the openai npm package is not installed in %s: run e2e/setup.sh (%v)", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "stream.mjs", s.agentURL+"/v1", "tiny")
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node stream.mjs: %v\nstdout: %s\nstderr: %s", err, stdout.Bytes(), stderr.Bytes())
	}
	var out struct {
		Chunks       int     `json:"chunks"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Node         *string `json:"node"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("stream.mjs printed %q: %v", stdout.Bytes(), err)
	}
	t.Logf("openai npm: %d chunks, text %q", out.Chunks, out.Text)
	if out.Chunks < 2 {
		t.Errorf("%d chunks, want more than 1", out.Chunks)
	}
	if out.Text == "" {
		t.Errorf("no text in %d chunks", out.Chunks)
	}
	if out.FinishReason == nil || (*out.FinishReason != "length" && *out.FinishReason != "stop") {
		t.Errorf("finish reason %v, want length or stop", deref(out.FinishReason))
	}
	if !s.direct && (out.Node == nil || *out.Node != nodeName) {
		t.Errorf("X-Hearth-Node seen by the SDK = %v, want %q", deref(out.Node), nodeName)
	}
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}
