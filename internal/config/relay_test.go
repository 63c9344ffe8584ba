package config

import (
	"testing"
	"time"
)

func TestRelayFiles(t *testing.T) {
	t.Setenv("HEARTH_TUNNEL_TOKEN", "tunnel-0123456789abcdef")
	t.Setenv("HEARTH_ADMIN_KEY", "admin-0123456789abcdef")
	t.Setenv("DEEPSEEK_KEY", "sk-deepseek")
	t.Setenv("ANTHROPIC_KEY", "sk-ant")
	c, err := LoadRelay("../../configs/relay.yaml")
	if err != nil {
		t.Fatalf("configs/relay.yaml: %v", err)
	}
	if c.Domains[0] != "ai.example.com" || c.Tunnel.Token != "tunnel-0123456789abcdef" || c.Limits.AuthBlock != 15*time.Minute ||
		len(c.ACME.Challenges) != 2 || c.Tunnel.Home != "home" || len(c.Channels) != 3 || c.Channels[1].Keys[0] != "sk-deepseek" ||
		c.Channels[2].BaseURL != "https://api.anthropic.com" || c.Channels[2].Timeouts.FirstByte != time.Minute || len(c.Routes) != 2 ||
		c.Channels[0].Timeouts.FirstByte != 10*time.Minute || c.Channels[1].Timeouts.FirstByte != time.Minute || c.Channels[1].Timeouts.Answer != 10*time.Minute {
		t.Errorf("configs/relay.yaml: %+v", c)
	}
	c, err = LoadRelay("testdata/relay-minimal.good.yaml")
	if err != nil || c.Listen.HTTPS != ":443" || c.DB != "/var/lib/hearth/relay.db" || c.Limits.RequestsPerMinute != 120 {
		t.Errorf("minimal: %+v %v", c, err)
	}
	tests := []struct{ file, want string }{
		{"relay-nodomain", "testdata/relay-nodomain.bad.yaml: domains is empty: name the domain that points at this VPS, e.g. [ai.example.com]"},
		{"relay-http01-off", "testdata/relay-http01-off.bad.yaml: acme.challenges has http-01 but listen.http is off: HTTP-01 needs port 80"},
		{"relay-readtimeout", "testdata/relay-readtimeout.bad.yaml: limits.read_timeout 300ms is too short: a phone on a slow uplink takes seconds to send a large request; give at least 1s, such as 5m (the default)"},
		{"relay-secrets", `testdata/relay-secrets.bad.yaml: 4 problems:
  domains[0] "https://relay.test/": give a bare host name such as ai.example.com
  tls.cert and tls.key go together: set both, or neither to use ACME
  tunnel.token must be at least 16 characters (e.g. ` + "`openssl rand -hex 24`" + `); agents present it to connect
  admin_key must be at least 16 characters (e.g. ` + "`openssl rand -hex 24`" + `): it guards /admin/v1`},
	}
	tests = append(tests, struct{ file, want string }{"relay-channels", `testdata/relay-channels.bad.yaml: 5 problems:
  channels[1].base_url "api.deepseek.com": the scheme is missing (for example "https://api.deepseek.com/v1")
  channels[1] (ds): key is empty: set key (or keys) to the vendor's API key, e.g. "${DEEPSEEK_KEY}"
  channels[2].type "gemini": use home, openai, anthropic or ollama
  routes[0].fallback[0] "nowhere/m": there is no channel named "nowhere"
  routes[0].fallback[1] "ds": write "channel/model", e.g. "deepseek/deepseek-chat"`})
	for _, tt := range tests {
		_, err := LoadRelay("testdata/" + tt.file + ".bad.yaml")
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s:\n got: %v\nwant: %s", tt.file, err, tt.want)
		}
	}
}
