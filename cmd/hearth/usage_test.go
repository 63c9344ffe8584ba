package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/relay/tokens"
	"github.com/hearthlab/hearth/relay/usage"
)

func runUsageCmd(g *globalFlags, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	cmd := newUsageCmd(g)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// writeUsage fills a relay database with records the way the running relay does.
func writeUsage(t *testing.T, db string, recs []usage.Record) {
	t.Helper()
	st, err := tokens.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	prices := []config.Price{{Model: "deepseek-*", Prompt: 0.27, Completion: 1.10}, {Model: "gpt-4o*", Prompt: 2.5, Completion: 10}}
	u, err := usage.New(st, config.UsageConfig{FlushInterval: time.Hour}, prices, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		u.Record(r)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := u.Run(ctx); err != nil { // writes what is buffered and returns
		t.Fatal(err)
	}
}

func sampleUsage() []usage.Record {
	d1 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	d2 := time.Date(2026, 3, 2, 21, 0, 0, 0, time.UTC)
	old := time.Date(2026, 2, 20, 9, 0, 0, 0, time.UTC)
	return []usage.Record{
		{Time: d1, TokenID: "tok_1", TokenName: "phone", Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b",
			PromptTokens: 1200, CompletionTokens: 3400, TTFT: 180 * time.Millisecond, Duration: 2400 * time.Millisecond, Status: 200, Stream: true},
		{Time: d1, TokenID: "tok_1", TokenName: "phone", Channel: "deepseek", KeyID: "deepseek#1", RequestedModel: "qwen3:14b",
			ServedModel: "deepseek-chat", PromptTokens: 800, CompletionTokens: 1600, Estimated: true, TTFT: 650 * time.Millisecond,
			Duration: 3100 * time.Millisecond, Status: 200, FellBackFrom: "home", Stream: true},
		{Time: d2, TokenID: "tok_2", TokenName: "laptop", Channel: "openai", KeyID: "openai#1", RequestedModel: "gpt-4o",
			ServedModel: "gpt-4o-2024-08-06", PromptTokens: 20000, CompletionTokens: 1000, TTFT: 900 * time.Millisecond,
			Duration: 900 * time.Millisecond, Status: 200},
		{Time: d2, TokenID: "tok_2", TokenName: "laptop", Channel: "deepseek", KeyID: "deepseek#2", RequestedModel: "deepseek-chat",
			Duration: 400 * time.Microsecond, Status: 429, FellBackFrom: "home"},
		{Time: old, TokenID: "tok_1", TokenName: "phone", Channel: "home", RequestedModel: "qwen3:14b", ServedModel: "qwen3:14b",
			PromptTokens: 99, Status: 200},
	}
}

func TestUsageCLIGolden(t *testing.T) {
	db := filepath.Join(t.TempDir(), "relay.db")
	g := &globalFlags{logLevel: "info", logFormat: "text"}
	out, err := runUsageCmd(g, "--db", db, "--since", "2026-03-01")
	if err != nil || out != "No usage recorded since 2026-03-01 00:00 UTC.\n" {
		t.Fatalf("an empty log: %v %q", err, out)
	}
	writeUsage(t, db, sampleUsage())

	var got bytes.Buffer
	for _, by := range []string{"day", "token", "channel", "model"} {
		out, err := runUsageCmd(g, "--db", db, "--since", "2026-03-01", "--by", by)
		if err != nil {
			t.Fatalf("--by %s: %v", by, err)
		}
		got.WriteString("$ hearth usage --since 2026-03-01 --by " + by + "\n" + out + "\n")
	}
	out, err = runUsageCmd(g, "--db", db, "--since", "all", "--by", "token")
	if err != nil {
		t.Fatal(err)
	}
	got.WriteString("$ hearth usage --since all --by token\n" + out)

	golden := "testdata/usage.golden"
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got.String() != string(want) {
		t.Errorf("usage output:\n%s\nwant:\n%s", got.String(), want)
	}
}

func TestUsageCLIArguments(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "relay.db")
	writeUsage(t, db, []usage.Record{{TokenID: "tok_1", TokenName: "phone", Channel: "home", Status: 200, PromptTokens: 7}})
	g := &globalFlags{logLevel: "info", logFormat: "text"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--by", "week"}, `--by "week": use day, token, channel, model`},
		{[]string{"--since", "yesterday"}, `--since "yesterday": give a period back from now (7d, 12h, 2w), a date (2026-03-01) or "all"`},
		{[]string{"extra"}, `unknown command "extra"`},
	} {
		if _, err := runUsageCmd(g, append(tc.args, "--db", db)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// The default period (7d) holds a record made now; --config finds the database.
	cfg := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(cfg, []byte("domains: [relay.test]\ntunnel: { token: \"0123456789abcdef0123\" }\n"+
		"admin_key: \"admin-0123456789abcdef\"\ndb: "+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runUsageCmd(&globalFlags{config: cfg, logLevel: "info", logFormat: "text"}, "--by", "token")
	if err != nil || !strings.Contains(out, "phone") || !strings.Contains(out, ", by token:") {
		t.Errorf("with --config: %v\n%s", err, out)
	}
}

func TestUsageCLITokenLimits(t *testing.T) {
	db := filepath.Join(t.TempDir(), "relay.db")
	g := &globalFlags{logLevel: "info", logFormat: "text"}
	out, _, err := runTokenCmd(g, "create", "--name", "kid", "--rpm", "10", "--tpm", "20000", "--quota-tokens", "2000000",
		"--quota-cost", "5.5", "--db", db)
	if err != nil || !strings.Contains(out, "limits: 10 requests/min, 20,000 tokens/min, 2,000,000 tokens/month, 5.5 cost/month.") {
		t.Fatalf("create with limits: %v\n%s", err, out)
	}
	if out, _, err := runTokenCmd(g, "create", "--name", "phone", "--db", db); err != nil || !strings.Contains(out, "limits: the relay's defaults.") {
		t.Errorf("create without limits: %v\n%s", err, out)
	}
	out, _, err = runTokenCmd(g, "set", "kid", "--rpm", "0", "--quota-tokens", "3000000", "--db", db)
	want := `now has limits: 20,000 tokens/min, 3,000,000 tokens/month, 5.5 cost/month. The running relay applies them within a few seconds.`
	if err != nil || !strings.HasPrefix(out, `Token "kid" (tok_`) || !strings.Contains(out, want) {
		t.Fatalf("set: %v\n%s", err, out)
	}
	out, _, err = runTokenCmd(g, "list", "--db", db)
	if err != nil || !strings.Contains(out, "LIMITS") || !strings.Contains(out, "20,000 tokens/min, 3,000,000 tokens/month, 5.5 cost/month") {
		t.Errorf("list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "phone ") && !strings.HasSuffix(line, " -") {
			t.Errorf("phone has no limits of its own: %q", line)
		}
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"set", "kid"}, "say what to change: --rpm, --tpm, --quota-tokens or --quota-cost"},
		{[]string{"set", "ghost", "--rpm", "5"}, "no live token named ghost"},
		{[]string{"set", "kid", "--tpm", "-5"}, "token kid: tpm -5: give 0 (no limit) or more"},
		{[]string{"create", "--name", "x", "--quota-cost", "-1"}, "token x: monthly cost quota -1: give 0 (none) or a positive number"},
	} {
		if _, _, err := runTokenCmd(g, append(tc.args, "--db", db)...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
