package tokens

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

func openTestStore(t *testing.T, path string, opts ...StoreOption) *Store {
	t.Helper()
	s, err := Open(path, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestTokenCreateListRevoke(t *testing.T) {
	clk := hearthtest.NewClock()
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"), WithClock(clk.Now))
	ctx := t.Context()

	secret, tok, err := s.Create(ctx, Spec{Name: "phone", Models: []string{"Qwen3:*", "rag:*", "llama3"}, Expires: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "hth_") || len(secret) != 4+43 {
		t.Errorf("secret %q: want hth_ and 43 base64url characters", secret)
	}
	if !strings.HasPrefix(tok.ID, "tok_") || tok.Name != "phone" || tok.ExpiresAt == nil || !tok.ExpiresAt.Equal(clk.Now().Add(90*24*time.Hour)) {
		t.Errorf("token %+v", tok)
	}
	if want := []string{"qwen3:*", "rag:*", "llama3:latest"}; strings.Join(tok.Models, ",") != strings.Join(want, ",") {
		t.Errorf("models %v, want normalised %v", tok.Models, want)
	}
	got, err := s.Check(secret)
	if err != nil || got.ID != tok.ID {
		t.Fatalf("Check: %+v %v", got, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != tok.ID || list[0].RevokedAt != nil || !list[0].CreatedAt.Equal(clk.Now()) {
		t.Fatalf("List: %+v %v", list, err)
	}

	clk.Advance(time.Hour)
	if err := s.Revoke(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	got, err = s.Check(secret)
	if !errors.Is(err, ErrRevoked) || got.RevokedAt == nil || !got.RevokedAt.Equal(clk.Now()) {
		t.Fatalf("Check after revoke: %+v %v", got, err)
	}
	list, _ = s.List(ctx)
	if len(list) != 1 || list[0].RevokedAt == nil {
		t.Fatalf("List after revoke: %+v", list)
	}

	for _, tc := range []struct {
		arg     string
		wantMsg string
		wantIs  error
	}{
		{"phone", "token phone was already revoked on 2026-03-01 11:00 UTC", ErrRevoked},
		{tok.ID, "token " + tok.ID + " was already revoked on 2026-03-01 11:00 UTC", ErrRevoked},
		{"tablet", "no token named tablet", ErrNotFound},
	} {
		err := s.Revoke(ctx, tc.arg)
		if !errors.Is(err, tc.wantIs) || !strings.HasPrefix(err.Error(), tc.wantMsg) {
			t.Errorf("Revoke(%q) = %v, want %q (%v)", tc.arg, err, tc.wantMsg, tc.wantIs)
		}
	}

	// Revoke by id; unknown and empty secrets.
	secret2, tok2, err := s.Create(ctx, Spec{Name: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, tok2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(secret2); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked by id: %v", err)
	}
	if _, err := s.Check("hth_" + strings.Repeat("A", 43)); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := s.Check(""); !errors.Is(err, ErrNoToken) {
		t.Errorf("empty: %v", err)
	}
}

func TestTokenExpiry(t *testing.T) {
	clk := hearthtest.NewClock()
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"), WithClock(clk.Now))
	secret, _, err := s.Create(t.Context(), Spec{Name: "trial", Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after time.Duration
		want  error
	}{{0, nil}, {59 * time.Minute, nil}, {time.Minute, ErrExpired}, {24 * time.Hour, ErrExpired}} {
		clk.Advance(tc.after)
		tok, err := s.Check(secret)
		if !errors.Is(err, tc.want) || (err == nil && tok.Name != "trial") {
			t.Errorf("at +%s: %v, want %v", clk.Now().Sub(hearthtest.NewClock().Now()), err, tc.want)
		}
	}
	// An expired token's name is free again.
	if _, _, err := s.Create(t.Context(), Spec{Name: "trial"}); err != nil {
		t.Errorf("reuse the name of an expired token: %v", err)
	}
}

func TestTokenUniqueNamesAndValidation(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"))
	ctx := t.Context()
	_, _, keyLine := hearthtest.OllamaKey(t)
	if _, _, err := s.Create(ctx, Spec{Name: "phone", OllamaKey: keyLine}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"taken", Spec{Name: "phone"}, `a live token is already named "phone"`},
		{"empty name", Spec{Name: " "}, `token name " "`},
		{"bad characters", Spec{Name: "my phone"}, `token name "my phone": use 1 to 64 letters`},
		{"id-like", Spec{Name: "tok_1"}, `token name "tok_1"`},
		{"too long", Spec{Name: strings.Repeat("a", 65)}, "token name"},
		{"bad glob", Spec{Name: "g", Models: []string{"qwen3:[a"}}, `model glob "qwen3:[a"`},
		{"negative expiry", Spec{Name: "n", Expires: -time.Hour}, "token expiry -1h0m0s"},
		{"malformed key", Spec{Name: "k", OllamaKey: "ssh-ed25519 AAAAnotbase64!"}, "ollama key: not an ssh public key"},
		{"private key", Spec{Name: "k", OllamaKey: "-----BEGIN OPENSSH PRIVATE KEY-----"}, "ollama key: that is a private key"},
		{"key taken", Spec{Name: "k", OllamaKey: keyLine}, `is already registered to token "phone"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Create(ctx, tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create(%+v) = %v, want an error containing %q", tc.spec, err, tc.want)
			}
		})
	}
	if err := s.Revoke(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, Spec{Name: "phone", OllamaKey: keyLine}); err != nil {
		t.Errorf("name and key of a revoked token are free again: %v", err)
	}
	list, _ := s.List(ctx)
	if len(list) != 2 {
		t.Errorf("want the revoked and the new token, got %d", len(list))
	}
}

func TestTokenOllamaKeyLookup(t *testing.T) {
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"))
	ctx := t.Context()
	_, pub, line := hearthtest.OllamaKey(t)
	bare := strings.Fields(line)[1] // only the AAAA... part is accepted too
	_, tok, err := s.Create(ctx, Spec{Name: "laptop", OllamaKey: bare})
	if err != nil {
		t.Fatal(err)
	}
	if tok.OllamaKeyFingerprint != ssh.FingerprintSHA256(pub) || !strings.HasPrefix(tok.OllamaKey, "ssh-ed25519 AAAA") {
		t.Errorf("token key %q %q", tok.OllamaKey, tok.OllamaKeyFingerprint)
	}
	got, err := s.CheckOllamaKey(pub.Marshal())
	if err != nil || got.Name != "laptop" {
		t.Fatalf("CheckOllamaKey: %+v %v", got, err)
	}
	_, other, _ := hearthtest.OllamaKey(t)
	if _, err := s.CheckOllamaKey(other.Marshal()); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("unregistered key: %v", err)
	}
	if err := s.Revoke(ctx, "laptop"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckOllamaKey(pub.Marshal()); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked key: %v", err)
	}
}

// The secret must exist nowhere on disk; its SHA-256 must (proving the right files were read).
func TestTokenStoresOnlyTheHash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "relay.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.Create(t.Context(), Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(secret); err != nil {
		t.Fatal(err)
	}
	var before []byte // while open, the row may still be in the WAL
	files, _ := filepath.Glob(path + "*")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		before = append(before, b...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	main, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.Sum256([]byte(secret))
	random := strings.TrimPrefix(secret, "hth_")
	for name, b := range map[string][]byte{"open": before, "closed": main} {
		if bytes.Contains(b, []byte(random)) || bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s: the secret is in the database files", name)
		}
		if !bytes.Contains(b, hash[:]) {
			t.Errorf("%s: the secret's hash is not in the database files: wrong files read?", name)
		}
	}
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode().Perm(), err, want)
		}
	}
}

// The CLI revokes from another process; the relay's Store must see it within its refresh.
func TestTokenRevokeFromAnotherStoreIsSeen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	relayStore := openTestStore(t, path, WithRefresh(50*time.Millisecond))
	cli := openTestStore(t, path)
	ctx := t.Context()

	secret, _, err := cli.Create(ctx, Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Eventually(t, "the relay sees the new token", 3*time.Second, func() bool { _, err := relayStore.Check(secret); return err == nil })
	if err := cli.Revoke(ctx, "phone"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	hearthtest.Eventually(t, "the relay sees the revocation", 3*time.Second, func() bool { _, err := relayStore.Check(secret); return errors.Is(err, ErrRevoked) })
	if took := time.Since(start); took > time.Second {
		t.Errorf("revocation seen after %s; refresh is 50ms", took)
	}
}

func TestTokenLastUsedWrittenOffThePath(t *testing.T) {
	clk := hearthtest.NewClock()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path, WithClock(clk.Now), WithRefresh(20*time.Millisecond))
	secret, _, err := s.Create(t.Context(), Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if _, err := s.Check(secret); err != nil {
		t.Fatal(err)
	}
	reader := openTestStore(t, path)
	hearthtest.Eventually(t, "last_used_at is written", 3*time.Second, func() bool {
		list, err := reader.List(t.Context())
		return err == nil && len(list) == 1 && list[0].LastUsedAt != nil && list[0].LastUsedAt.Equal(clk.Now())
	})
}

func TestTokenSchemaMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTestStore(t, path)
	if _, _, err := s.Create(t.Context(), Spec{Name: "phone"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening keeps the data and applies nothing twice.
	s2 := openTestStore(t, path)
	if list, err := s2.List(t.Context()); err != nil || len(list) != 1 {
		t.Fatalf("after reopen: %v %v", list, err)
	}
	var v int
	if err := s2.db.QueryRow(`SELECT version FROM schema_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("schema version %d (%v), want %d", v, err, len(migrations))
	}
	s2.Close()

	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(path, nil); err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Errorf("a newer schema: %v", err)
	}
}

func TestTokenAllows(t *testing.T) {
	for _, tc := range []struct {
		models []string
		model  string
		want   bool
	}{
		{nil, "anything:7b", true},
		{[]string{"qwen3:*"}, "qwen3:14b", true},
		{[]string{"qwen3:*"}, "Qwen3:14B", true},
		{[]string{"qwen3:*"}, "qwen3", true}, // qwen3:latest
		{[]string{"qwen3:*"}, "qwen2.5:7b", false},
		{[]string{"llama3:latest"}, "llama3", true},
		{[]string{"llama3:latest"}, "llama3:8b", false},
		{[]string{"rag:*"}, "rag:docs", true},
		{[]string{"qwen3:*", "rag:*"}, "deepseek-chat", false},
		{[]string{"*"}, "hf.co/org/model:q4", true},
		{[]string{"hf.co/*"}, "hf.co/org/model:q4", true},
		{[]string{"qwen3:1?b"}, "qwen3:14b", true},
	} {
		if got := Allows(Token{Models: tc.models}, tc.model); got != tc.want {
			t.Errorf("Allows(%v, %q) = %v, want %v", tc.models, tc.model, got, tc.want)
		}
	}
}

// Create gives a key again once its token has expired; the new token, not the expired one,
// must then answer for the key.
func TestTokenOllamaKeyReusedAfterExpiry(t *testing.T) {
	clk := hearthtest.NewClock()
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"), WithClock(clk.Now))
	ctx := t.Context()
	_, pub, line := hearthtest.OllamaKey(t)
	if _, _, err := s.Create(ctx, Spec{Name: "laptop", OllamaKey: line, Expires: time.Hour}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	if _, err := s.CheckOllamaKey(pub.Marshal()); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired key: %v", err)
	}
	if _, _, err := s.Create(ctx, Spec{Name: "laptop-2", OllamaKey: line}); err != nil {
		t.Fatalf("the key of an expired token is free again: %v", err)
	}
	got, err := s.CheckOllamaKey(pub.Marshal())
	if err != nil || got.Name != "laptop-2" {
		t.Fatalf("want the new token laptop-2, got %q: %v", got.Name, err)
	}
	if err := s.Revoke(ctx, "laptop-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CheckOllamaKey(pub.Marshal()); !errors.Is(err, ErrRevoked) {
		t.Errorf("after revoking the new token too: %v", err)
	}
}

func TestQuotaMigrationFromTokensOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range slices.Concat(migrations[0], []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		`INSERT INTO schema_version (version) VALUES (1)`,
		`INSERT INTO tokens (id, name, secret_hash, created_at) VALUES ('tok_1', 'phone', x'00', 1)`}) {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s := openTestStore(t, path)
	list, err := s.List(t.Context())
	if err != nil || len(list) != 1 || list[0].Limits() != (Limits{}) {
		t.Fatalf("an old token after the upgrade: %+v %v", list, err)
	}
	var n int
	if err := s.DB().QueryRow(`SELECT COUNT(*) FROM usage_records`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the usage log's table on an upgraded database: %d rows, %v", n, err)
	}
}

func TestLive(t *testing.T) {
	clk := hearthtest.NewClock()
	s := openTestStore(t, filepath.Join(t.TempDir(), "relay.db"), WithClock(clk.Now))
	_, phone, err := s.Create(t.Context(), Spec{Name: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	_, trial, err := s.Create(t.Context(), Spec{Name: "trial", Expires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Live(phone.ID) || !s.Live(trial.ID) {
		t.Fatalf("new tokens: Live %v %v, want both", s.Live(phone.ID), s.Live(trial.ID))
	}
	if s.Live("tok_unknown") {
		t.Error("an unknown id is live")
	}
	clk.Advance(2 * time.Hour)
	if s.Live(trial.ID) {
		t.Error("an expired token is live")
	}
	if err := s.Revoke(t.Context(), "phone"); err != nil {
		t.Fatal(err)
	}
	if s.Live(phone.ID) {
		t.Error("a revoked token is live")
	}
}
