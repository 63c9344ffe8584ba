package tokens

// The token store's database side: reading the tokens in, writing last-used times out in
// batches, and the schema.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// reload replaces the index with what the database holds now.
func (s *Store) reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rows, err := s.readAll(ctx)
	if err != nil {
		return err
	}
	idx := &tokenIndex{byHash: make(map[[sha256.Size]byte]*indexedToken, len(rows)), byKey: map[string]*indexedToken{},
		byID: make(map[string]*indexedToken, len(rows))}
	for i := range rows {
		t := &rows[i]
		idx.byHash[t.hash] = t
		idx.byID[t.ID] = t
		if t.OllamaKey == "" {
			continue
		}
		pub, _, err := parseOllamaKey(t.OllamaKey)
		if err != nil {
			s.log.Warn("token store: stored ollama key does not parse; ignored", "auth_name", t.Name, "auth_id", t.ID, "err", err)
			continue
		}
		// A key may belong to several tokens, but Create gives it again only once all its
		// earlier tokens are revoked or expired: the newest answers for it (rows come oldest
		// first), live or not.
		idx.byKey[string(pub.Marshal())] = t
	}
	s.idx.Store(idx)
	return nil
}

const tokenColumns = `id, name, secret_hash, models, created_at, expires_at, revoked_at, last_used_at, ollama_key, ollama_key_fp,
	rpm, tpm, quota_tokens, quota_cost`

func (s *Store) readAll(ctx context.Context) ([]indexedToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []indexedToken
	for rows.Next() {
		var t indexedToken
		var hash []byte
		var models string
		var created int64
		var expires, revoked, used sql.NullInt64
		if err := rows.Scan(&t.ID, &t.Name, &hash, &models, &created, &expires, &revoked, &used,
			&t.OllamaKey, &t.OllamaKeyFingerprint, &t.RPM, &t.TPM, &t.MonthlyTokens, &t.MonthlyCost); err != nil {
			return nil, err
		}
		copy(t.hash[:], hash)
		if err := json.Unmarshal([]byte(models), &t.Models); err != nil {
			return nil, fmt.Errorf("token %s: models column: %w", t.ID, err)
		}
		t.CreatedAt = time.UnixMilli(created).UTC()
		t.ExpiresAt, t.RevokedAt, t.LastUsedAt = timeOrNil(expires), timeOrNil(revoked), timeOrNil(used)
		out = append(out, t)
	}
	return out, rows.Err()
}

// flushUsed writes the last-used times gathered since the previous flush in one transaction.
func (s *Store) flushUsed(ctx context.Context) {
	s.usedMu.Lock()
	used := s.used
	if len(used) == 0 {
		s.usedMu.Unlock()
		return
	}
	s.used = map[string]time.Time{}
	s.usedMu.Unlock()

	err := s.InTx(ctx, func(tx *sql.Tx) error {
		for id, at := range used {
			ms := at.UnixMilli()
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used_at = ? WHERE id = ?
				AND (last_used_at IS NULL OR last_used_at < ?)`, ms, id, ms); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	s.log.Warn("token store: could not write last-used times; will retry", "tokens", len(used), "err", err)
	s.usedMu.Lock()
	for id, at := range used {
		if at.After(s.used[id]) {
			s.used[id] = at
		}
	}
	s.usedMu.Unlock()
}

// InTx runs fn in a transaction, committed when fn returns nil; the DSN makes it BEGIN
// IMMEDIATE, so a check-then-insert cannot race another process. The usage log writes its
// batches with it.
func (s *Store) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// migrations bring the schema from version i to i+1. Append only.
var migrations = [][]string{
	{ // 1: tokens
		`CREATE TABLE tokens (
			id            TEXT PRIMARY KEY,
			name          TEXT NOT NULL,
			secret_hash   BLOB NOT NULL UNIQUE,      -- SHA-256 of the secret; the secret is never stored
			models        TEXT NOT NULL DEFAULT '[]', -- JSON array of globs; empty = all
			created_at    INTEGER NOT NULL,           -- unix milliseconds, like every time here
			expires_at    INTEGER,
			revoked_at    INTEGER,
			last_used_at  INTEGER,
			ollama_key    TEXT NOT NULL DEFAULT '',   -- "ssh-ed25519 AAAA... comment"
			ollama_key_fp TEXT NOT NULL DEFAULT ''    -- "SHA256:..."
		)`,
		`CREATE INDEX tokens_name ON tokens (name)`,
		`CREATE INDEX tokens_ollama_key_fp ON tokens (ollama_key_fp)`,
	},
	{ // 2: limits per token; 0 = the default (rpm) or none
		`ALTER TABLE tokens ADD COLUMN rpm INTEGER NOT NULL DEFAULT 0`,          // requests per minute
		`ALTER TABLE tokens ADD COLUMN tpm INTEGER NOT NULL DEFAULT 0`,          // tokens per minute
		`ALTER TABLE tokens ADD COLUMN quota_tokens INTEGER NOT NULL DEFAULT 0`, // per calendar month, UTC
		`ALTER TABLE tokens ADD COLUMN quota_cost REAL NOT NULL DEFAULT 0`,      // per calendar month, UTC
	},
	usageMigration, // 3: the usage log (relay/usage)
}

func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&v); err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this hearth knows (%d): run a newer hearth", v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		for _, stmt := range migrations[i] {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", i+1, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM schema_version`); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (?)`, len(migrations)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	level := slog.LevelInfo
	if v == 0 {
		level = slog.LevelDebug // a new database: nothing to tell
	}
	log.Log(ctx, level, "token store schema updated", "from", v, "to", len(migrations))
	return nil
}

// newSecret returns a token secret and its SHA-256.
func newSecret() (string, [sha256.Size]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", [sha256.Size]byte{}, fmt.Errorf("relay: token secret: %w", err)
	}
	secret := SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, sha256.Sum256([]byte(secret)), nil
}

func newTokenID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return "tok_" + hex.EncodeToString(b)
}

func millisOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMilli()
}

func timeOrNil(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// usageMigration is the usage log's table (relay/usage) in the Store's migrations: the
// Store owns the database file and its schema. Times are unix
// milliseconds, durations microseconds; cost is priced when the record is written.
var usageMigration = []string{
	`CREATE TABLE usage_records (
		id                INTEGER PRIMARY KEY,
		time              INTEGER NOT NULL,
		token_id          TEXT NOT NULL,
		token_name        TEXT NOT NULL,
		channel           TEXT NOT NULL,
		key_id            TEXT NOT NULL DEFAULT '',
		requested_model   TEXT NOT NULL,
		served_model      TEXT NOT NULL,
		prompt_tokens     INTEGER NOT NULL,
		completion_tokens INTEGER NOT NULL,
		estimated         INTEGER NOT NULL,        -- 0 or 1
		ttft_us           INTEGER NOT NULL,
		duration_us       INTEGER NOT NULL,
		status            INTEGER NOT NULL,
		fell_back_from    TEXT NOT NULL DEFAULT '', -- channels tried before, comma-separated
		stream            INTEGER NOT NULL,        -- 0 or 1
		cost              REAL NOT NULL DEFAULT 0  -- in the prices' unit
	)`,
	`CREATE INDEX usage_records_time ON usage_records (time)`,
}

// DB is the Store's database, for the usage log that shares its file (relay/usage). The Store
// keeps owning it: Close closes it.
func (s *Store) DB() *sql.DB { return s.db }
