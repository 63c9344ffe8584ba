package logging

import (
	"bytes"
	"strings"
	"testing"
)

func TestRedactsSecretsAndPicksFormat(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "api_key", "sk-very-secret", "Authorization", "Bearer abc", "tunnel_token", "t0k", "tokens", 42, "model", "tiny")
	out := buf.String()
	for _, secret := range []string{"sk-very-secret", "Bearer abc", "t0k"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q reached the log: %s", secret, out)
		}
	}
	if !strings.Contains(out, `"tokens":42`) || !strings.Contains(out, `"model":"tiny"`) || !strings.HasPrefix(out, "{") {
		t.Errorf("ordinary attributes lost or not JSON: %s", out)
	}
	buf.Reset()
	text, _ := New(&buf, "warn", "text")
	text.Info("dropped")
	text.Warn("kept")
	if strings.Contains(buf.String(), "dropped") || !strings.Contains(buf.String(), "level=WARN msg=kept") {
		t.Errorf("text/warn logger wrote %q", buf.String())
	}
	if _, err := New(&buf, "info", "xml"); err == nil || err.Error() != `--log-format "xml": use json, text or auto` {
		t.Errorf("bad format: %v", err)
	}
}
