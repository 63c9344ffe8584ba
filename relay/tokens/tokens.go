// Package tokens is the relay's client credentials: a SQLite store (pure Go, WAL) of hashed
// tokens with their allowed models, lifetimes and limits, answered from memory on the request
// path; the ollama CLI's key signatures (VerifyOllamaSignature); and lifetimes as people write
// them (ParseLifetime). The Store owns the relay's database file and its schema, which the
// usage log shares. It uses nothing else of the relay.
package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver: pure Go, keeps the binary static

	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/internal/modelname"
)

// Errors of Check and CheckOllamaKey; the caller turns them into messages for the client.
var (
	ErrNoToken      = errors.New("no token")
	ErrUnknownToken = errors.New("unknown token")
	ErrRevoked      = errors.New("token revoked")
	ErrExpired      = errors.New("token expired")
	// ErrNameTaken: Create was given the name of a live token.
	ErrNameTaken = errors.New("token name taken")
	// ErrNotFound: Revoke found no token by that name or id.
	ErrNotFound = errors.New("no such token")
)

// SecretPrefix starts every token secret, so that a leaked one is easy to recognise.
const SecretPrefix = "hth_"

// DefaultRefresh is how often a Store rereads the database, which is how a token revoked
// by `hearth token revoke` (another process) stops working in the running relay.
const DefaultRefresh = 2 * time.Second

// Token is one client credential of the relay. The secret is never kept: only its SHA-256.
// Values returned by a Store share their slices with its index: treat them as read-only.
type Token struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Models are the globs of models this token may use ("qwen3:*", "rag:*"); empty = all.
	Models    []string   `json:"models"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"` // nil: never
	RevokedAt *time.Time `json:"revoked_at,omitempty"` // nil: live
	// LastUsedAt is written in batches every refresh interval, so it lags a little.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// OllamaKey is the ssh-ed25519 public key line the `ollama` CLI signs with, or "".
	OllamaKey            string `json:"ollama_key,omitempty"`
	OllamaKeyFingerprint string `json:"ollama_key_fingerprint,omitempty"` // "SHA256:..."

	// RPM is the token's requests per minute; 0 = the relay's limits.requests_per_minute.
	RPM int `json:"rpm,omitempty"`
	// TPM is the token's prompt + completion tokens per minute; 0 = no limit.
	TPM int `json:"tpm,omitempty"`
	// MonthlyTokens caps prompt + completion tokens per calendar month (UTC); 0 = no quota.
	MonthlyTokens int64 `json:"monthly_tokens,omitempty"`
	// MonthlyCost caps the cost per calendar month (UTC), in the unit of the config's
	// prices; 0 = no quota.
	MonthlyCost float64 `json:"monthly_cost,omitempty"`
}

// Spec is what `hearth token create` asks for.
type Spec struct {
	Name   string
	Models []string
	// Expires is the token's lifetime from now; 0 = never.
	Expires time.Duration
	// OllamaKey is an "ssh-ed25519 AAAA... comment" line (~/.ollama/id_ed25519.pub), or "".
	OllamaKey string
	// Limits of the token, as on Token: 0 = the default (RPM) or none.
	RPM           int
	TPM           int
	MonthlyTokens int64
	MonthlyCost   float64
}

// StoreOption changes a Store's defaults (tests shorten the refresh and control the clock).
type StoreOption func(*Store)

// WithRefresh sets how often the Store rereads the database (default DefaultRefresh).
func WithRefresh(d time.Duration) StoreOption {
	return func(s *Store) {
		if d > 0 {
			s.refresh = d
		}
	}
}

// WithClock replaces time.Now for expiry checks and timestamps.
func WithClock(now func() time.Time) StoreOption { return func(s *Store) { s.now = now } }

// Store keeps tokens in SQLite and answers checks from an in-memory index, so the request
// path never touches the disk. A goroutine owned by the Store rereads the database and writes
// last-used times every refresh interval; Close stops it.
type Store struct {
	db      *sql.DB
	log     *slog.Logger
	now     func() time.Time
	refresh time.Duration

	idx      atomic.Pointer[tokenIndex]
	reloadMu sync.Mutex // an older read never replaces a newer index

	usedMu sync.Mutex
	used   map[string]time.Time // token id → last use not yet written

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type tokenIndex struct {
	byHash map[[sha256.Size]byte]*indexedToken
	byKey  map[string]*indexedToken // ssh wire-format public key → token
	byID   map[string]*indexedToken
}

type indexedToken struct {
	Token
	hash [sha256.Size]byte
}

// OpenStore opens (creating it, 0600 in a 0700 directory, when needed) the token database at
// path, brings its schema up to date and loads the index. A nil logger discards.
func Open(path string, logger *slog.Logger, opts ...StoreOption) (*Store, error) {
	s := &Store{log: logging.OrDiscard(logger), now: time.Now, refresh: DefaultRefresh,
		used: map[string]time.Time{}, done: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if err := prepareDBFile(path, s.log); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("relay: open token store %s: %w", path, err)
	}
	s.db = db
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := migrate(ctx, db, s.log); err != nil {
		db.Close()
		return nil, fmt.Errorf("relay: token store %s: %w", path, err)
	}
	if err := s.reload(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("relay: token store %s: %w", path, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.loop(runCtx)
	return s, nil
}

func prepareDBFile(path string, log *slog.Logger) error {
	if path == "" {
		return errors.New("relay: token store: no database path (db in relay.yaml)")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("relay: token store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("relay: token store: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err == nil {
			log.Info("token database was readable by others: now 0600", "file", path, "was", st.Mode().Perm().String())
		}
	}
	return nil
}

// Close stops the refresher, writes pending last-used times and closes the database. It may
// be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.flushUsed(ctx)
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wctx, cancel := context.WithTimeout(ctx, max(s.refresh, 5*time.Second))
		s.flushUsed(wctx)
		if err := s.reload(wctx); err != nil && ctx.Err() == nil {
			s.log.Warn("token store: reread failed; checks use the last good copy", "err", err)
		}
		cancel()
	}
}

// Create makes a token and returns its secret, which exists nowhere else afterwards.
func (s *Store) Create(ctx context.Context, spec Spec) (string, Token, error) {
	tok, err := s.newToken(spec)
	if err != nil {
		return "", Token{}, err
	}
	secret, hash, err := newSecret()
	if err != nil {
		return "", Token{}, err
	}
	models, _ := json.Marshal(tok.Models)
	err = s.InTx(ctx, func(tx *sql.Tx) error {
		now := tok.CreatedAt.UnixMilli()
		var other string
		err := tx.QueryRowContext(ctx, `SELECT id FROM tokens WHERE name = ? AND revoked_at IS NULL
			AND (expires_at IS NULL OR expires_at > ?) LIMIT 1`, tok.Name, now).Scan(&other)
		if err == nil {
			return storeError(ErrNameTaken, "a live token is already named %q (%s): revoke it first (`hearth token revoke %s`) or choose another name",
				tok.Name, other, tok.Name)
		} else if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if tok.OllamaKey != "" {
			err := tx.QueryRowContext(ctx, `SELECT name FROM tokens WHERE ollama_key_fp = ? AND revoked_at IS NULL
				AND (expires_at IS NULL OR expires_at > ?) LIMIT 1`, tok.OllamaKeyFingerprint, now).Scan(&other)
			if err == nil {
				return storeError(ErrNameTaken, "this ollama key (%s) is already registered to token %q: revoke that one first or use another key",
					tok.OllamaKeyFingerprint, other)
			} else if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO tokens (id, name, secret_hash, models, created_at, expires_at, ollama_key, ollama_key_fp,
			rpm, tpm, quota_tokens, quota_cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, tok.ID, tok.Name, hash[:], string(models), now,
			millisOrNil(tok.ExpiresAt), tok.OllamaKey, tok.OllamaKeyFingerprint, tok.RPM, tok.TPM, tok.MonthlyTokens, tok.MonthlyCost)
		return err
	})
	if err != nil {
		if errors.Is(err, ErrNameTaken) {
			return "", Token{}, err
		}
		return "", Token{}, fmt.Errorf("relay: create token %q: %w", tok.Name, err)
	}
	if err := s.reload(ctx); err != nil {
		s.log.Warn("token store: reread after create failed", "err", err)
	}
	return secret, tok, nil
}

var tokenNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate checks spec as Create would, without touching the database: its errors are the
// caller's to fix (Create's other errors are the database's).
func (s *Store) Validate(spec Spec) error {
	_, err := s.newToken(spec)
	return err
}

// newToken validates spec and fills in everything but the secret.
func (s *Store) newToken(spec Spec) (Token, error) {
	name := strings.TrimSpace(spec.Name)
	if !tokenNameRe.MatchString(name) || strings.HasPrefix(name, "tok_") {
		return Token{}, fmt.Errorf("token name %q: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (and not \"tok_\", which starts ids)", spec.Name)
	}
	models, err := modelname.NormalizeGlobs(spec.Models)
	if err != nil {
		return Token{}, err
	}
	if spec.Expires < 0 {
		return Token{}, fmt.Errorf("token expiry %s: give a positive duration, or 0 for never", spec.Expires)
	}
	limits := Limits{RPM: spec.RPM, TPM: spec.TPM, MonthlyTokens: spec.MonthlyTokens, MonthlyCost: spec.MonthlyCost}
	if err := limits.validate(); err != nil {
		return Token{}, fmt.Errorf("token %s: %w", name, err)
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	tok := Token{ID: newTokenID(), Name: name, Models: models, CreatedAt: now,
		RPM: spec.RPM, TPM: spec.TPM, MonthlyTokens: spec.MonthlyTokens, MonthlyCost: spec.MonthlyCost}
	if spec.Expires > 0 {
		exp := now.Add(spec.Expires)
		tok.ExpiresAt = &exp
	}
	if strings.TrimSpace(spec.OllamaKey) != "" {
		pub, line, err := parseOllamaKey(spec.OllamaKey)
		if err != nil {
			return Token{}, err
		}
		tok.OllamaKey, tok.OllamaKeyFingerprint = line, sshFingerprint(pub)
	}
	return tok, nil
}

// List returns every token, revoked and expired ones included, oldest first.
func (s *Store) List(ctx context.Context) ([]Token, error) {
	rows, err := s.readAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("relay: list tokens: %w", err)
	}
	toks := make([]Token, len(rows))
	for i, r := range rows {
		toks[i] = r.Token
	}
	return toks, nil
}

// Revoke ends the token with that id, or every unrevoked token with that name.
func (s *Store) Revoke(ctx context.Context, nameOrID string) error {
	key := strings.TrimSpace(nameOrID)
	var done bool
	var already sql.NullInt64
	err := s.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE tokens SET revoked_at = ? WHERE revoked_at IS NULL AND (id = ? OR name = ?)`,
			s.now().UTC().UnixMilli(), key, key)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			done = true
			return nil
		}
		err = tx.QueryRowContext(ctx, `SELECT MAX(revoked_at) FROM tokens WHERE id = ? OR name = ?`, key, key).Scan(&already)
		return err
	})
	switch {
	case err != nil:
		return fmt.Errorf("relay: revoke token %q: %w", key, err)
	case !done && already.Valid:
		return storeError(ErrRevoked, "token %s was already revoked on %s", key, FormatWhen(time.UnixMilli(already.Int64)))
	case !done:
		return storeError(ErrNotFound, "no token named %s", key)
	}
	if err := s.reload(ctx); err != nil {
		s.log.Warn("token store: reread after revoke failed", "err", err)
	}
	return nil
}

// tokenError is a message for a person that callers can still match with errors.Is.
type tokenError struct {
	msg  string
	kind error
}

func (e *tokenError) Error() string { return e.msg }
func (e *tokenError) Unwrap() error { return e.kind }

func storeError(kind error, format string, args ...any) error {
	return &tokenError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// formatWhen is how dates appear in messages to clients and operators.
// FormatWhen is how token times (expiry, revocation) are shown to people.
func FormatWhen(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") }

// Check finds the token whose secret this is, from memory. For a revoked or expired token it
// returns the token too, so the caller can say when.
func (s *Store) Check(secret string) (Token, error) {
	if secret == "" {
		return Token{}, ErrNoToken
	}
	sum := sha256.Sum256([]byte(secret))
	t := s.idx.Load().byHash[sum]
	// The map finds the candidate by hash; the comparison that decides is constant-time.
	if t == nil || subtle.ConstantTimeCompare(t.hash[:], sum[:]) != 1 {
		return Token{}, ErrUnknownToken
	}
	return s.judge(&t.Token)
}

// CheckOllamaKey finds the token registered for an ssh wire-format public key (as
// VerifyOllamaSignature returns it), from memory.
func (s *Store) CheckOllamaKey(pubkey []byte) (Token, error) {
	if len(pubkey) == 0 {
		return Token{}, ErrNoToken
	}
	t := s.idx.Load().byKey[string(pubkey)]
	if t == nil {
		return Token{}, ErrUnknownToken
	}
	return s.judge(&t.Token)
}

// Live tells, from memory, whether the token with this id may still be used: it exists and
// is neither revoked nor expired. Work a token started and that outlives its request (the web
// app's generations) asks it, so that a revoke ends that work too.
func (s *Store) Live(id string) bool {
	t := s.idx.Load().byID[id]
	if t == nil || t.RevokedAt != nil {
		return false
	}
	return t.ExpiresAt == nil || s.now().Before(*t.ExpiresAt)
}

func (s *Store) judge(t *Token) (Token, error) {
	if t.RevokedAt != nil {
		return *t, ErrRevoked
	}
	now := s.now()
	if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
		return *t, ErrExpired
	}
	s.usedMu.Lock()
	s.used[t.ID] = now
	s.usedMu.Unlock()
	return *t, nil
}
