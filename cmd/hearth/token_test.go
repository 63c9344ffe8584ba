package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hearthlab/hearth/relay/tokens"
)

func runTokenCmd(g *globalFlags, args ...string) (stdout, stderr string, err error) {
	var out, errOut bytes.Buffer
	cmd := newTokenCmd(g)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errOut.String(), err
}

var secretRe = regexp.MustCompile(`hth_[A-Za-z0-9_-]{43}`)

func checkSecret(t *testing.T, db, secret string) (tokens.Token, error) {
	t.Helper()
	st, err := tokens.Open(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.Check(secret)
}

func TestTokenCLICreateListRevoke(t *testing.T) {
	db := filepath.Join(t.TempDir(), "relay.db")
	g := &globalFlags{logLevel: "info", logFormat: "text"}

	out, _, err := runTokenCmd(g, "create", "--name", "phone", "--models", "qwen3:*,rag:*", "--expires", "90d", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	secrets := secretRe.FindAllString(out, -1)
	if len(secrets) != 1 || strings.Count(out, "hth_") != 1 {
		t.Fatalf("create must print the secret exactly once:\n%s", out)
	}
	for _, want := range []string{`Created token "phone" (tok_`, "models qwen3:*,rag:*", "expires " + time.Now().UTC().Add(90*24*time.Hour).Format("2006-01-02"),
		"it will not be shown again"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	if tok, err := checkSecret(t, db, secrets[0]); err != nil || tok.Name != "phone" {
		t.Fatalf("the printed secret does not work: %+v %v", tok, err)
	}

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	keyLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " me@laptop"
	out, _, err = runTokenCmd(g, "create", "--name", "laptop", "--ollama-key", keyLine, "--db", db)
	if err != nil || !strings.Contains(out, ssh.FingerprintSHA256(sshPub)) {
		t.Fatalf("create with an ollama key: %v\n%s", err, out)
	}

	out, _, err = runTokenCmd(g, "list", "--db", db)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "hth_") || strings.Contains(out, secrets[0][4:]) || strings.Contains(out, strings.Fields(keyLine)[1]) {
		t.Errorf("list shows a secret or a whole key:\n%s", out)
	}
	for _, want := range []string{"NAME", "LAST USED", "phone", "laptop", "qwen3:*,rag:*", "all", ssh.FingerprintSHA256(sshPub)} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}

	out, _, err = runTokenCmd(g, "revoke", "phone", "--db", db)
	if err != nil || !strings.Contains(out, "Revoked phone") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	if _, err := checkSecret(t, db, secrets[0]); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("after revoke: %v", err)
	}
	out, _, _ = runTokenCmd(g, "list", "--db", db)
	today := time.Now().UTC().Format("2006-01-02")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "phone ") && strings.Count(line, today) < 2 { // created and revoked today
			t.Errorf("list does not show phone as revoked:\n%s", out)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"revoke", "phone"}, "token phone was already revoked on " + today},
		{[]string{"revoke", "ghost"}, "no token named ghost"},
		{[]string{"create", "--name", "laptop"}, `a live token is already named "laptop"`},
		{[]string{"create", "--name", "x", "--expires", "soon"}, `--expires "soon": use a positive number`},
		{[]string{"create", "--name", "x", "--ollama-key", "ssh-rsa nope"}, "ollama key: not an ssh public key"},
		{[]string{"create"}, `required flag(s) "name" not set`},
	} {
		_, _, err := runTokenCmd(g, append(tc.args, "--db", db)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, _, err := runTokenCmd(g, "create", "--name", "phone", "--db", db); err != nil {
		t.Errorf("the name of a revoked token is free again: %v", err)
	}
}

func TestTokenCLIReadsTheRelayConfig(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "state", "relay.db")
	good := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(good, []byte("domains: [relay.test]\ntunnel: { token: \"0123456789abcdef0123\" }\n"+
		"admin_key: \"admin-0123456789abcdef\"\ndb: "+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &globalFlags{config: good, logLevel: "info", logFormat: "text"}
	out, _, err := runTokenCmd(g, "create", "--name", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkSecret(t, db, secretRe.FindString(out)); err != nil {
		t.Fatalf("token not in the config's db: %v", err)
	}

	// A config the token commands cannot load says how to go on with --db.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("db: "+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.config = bad
	if _, _, err := runTokenCmd(g, "list"); err == nil || !strings.Contains(err.Error(), "pass --db PATH") {
		t.Errorf("bad config: %v", err)
	}
	if out, _, err := runTokenCmd(g, "list", "--db", db); err != nil || !strings.Contains(out, "phone") {
		t.Errorf("--db skips the config: %v\n%s", err, out)
	}
}

func TestTokenListRender(t *testing.T) {
	at := func(s string) *time.Time {
		v, _ := time.Parse(time.RFC3339, s)
		return &v
	}
	toks := []tokens.Token{
		{ID: "tok_1", Name: "phone", Models: []string{"qwen3:*", "rag:*"}, CreatedAt: *at("2026-01-01T10:00:00Z"),
			ExpiresAt: at("2026-04-01T10:00:00Z"), LastUsedAt: at("2026-02-28T09:15:00Z")},
		{ID: "tok_2", Name: "old", CreatedAt: *at("2026-01-02T10:00:00Z"), ExpiresAt: at("2026-02-01T10:00:00Z")},
		{ID: "tok_3", Name: "laptop", CreatedAt: *at("2026-01-03T10:00:00Z"), RevokedAt: at("2026-01-05T08:00:00Z"),
			OllamaKeyFingerprint: "SHA256:abc"},
	}
	var got bytes.Buffer
	renderTokens(&got, toks, *at("2026-03-01T00:00:00Z"))
	want := `NAME    ID     MODELS         EXPIRES                     CREATED           LAST USED         REVOKED           OLLAMA KEY
phone   tok_1  qwen3:*,rag:*  2026-04-01 10:00            2026-01-01 10:00  2026-02-28 09:15  -                 -
old     tok_2  all            2026-02-01 10:00 (expired)  2026-01-02 10:00  never             -                 -
laptop  tok_3  all            never                       2026-01-03 10:00  never             2026-01-05 08:00  SHA256:abc
`
	if got.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", got.String(), want)
	}
	got.Reset()
	renderTokens(&got, nil, time.Now())
	if !strings.Contains(got.String(), "hearth token create --name NAME") {
		t.Errorf("empty list: %q", got.String())
	}
}
