package tokens

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/hearthlab/hearth/internal/modelname"
)

// Limits returns the token's own limits.
func (t Token) Limits() Limits {
	return Limits{RPM: t.RPM, TPM: t.TPM, MonthlyTokens: t.MonthlyTokens, MonthlyCost: t.MonthlyCost}
}

// Limits are the limits a token carries; see the fields of the same names on Token.
type Limits struct {
	RPM           int
	TPM           int
	MonthlyTokens int64
	MonthlyCost   float64
}

func (l Limits) validate() error {
	switch {
	case l.RPM < 0:
		return fmt.Errorf("rpm %d: give 0 (the relay's default) or more", l.RPM)
	case l.TPM < 0:
		return fmt.Errorf("tpm %d: give 0 (no limit) or more", l.TPM)
	case l.MonthlyTokens < 0:
		return fmt.Errorf("monthly token quota %d: give 0 (none) or more", l.MonthlyTokens)
	case l.MonthlyCost < 0 || math.IsNaN(l.MonthlyCost) || math.IsInf(l.MonthlyCost, 0):
		return fmt.Errorf("monthly cost quota %v: give 0 (none) or a positive number", l.MonthlyCost)
	}
	return nil
}

// SetLimits changes the limits of the live token with that id or name: update gets the
// current ones and changes what it wants. It returns the token as it is now.
func (s *Store) SetLimits(ctx context.Context, nameOrID string, update func(*Limits)) (Token, error) {
	key := strings.TrimSpace(nameOrID)
	var id string
	var invalid error
	err := s.InTx(ctx, func(tx *sql.Tx) error {
		var l Limits
		err := tx.QueryRowContext(ctx, `SELECT id, rpm, tpm, quota_tokens, quota_cost FROM tokens WHERE (id = ? OR name = ?)
			AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC LIMIT 1`,
			key, key, s.now().UTC().UnixMilli()).Scan(&id, &l.RPM, &l.TPM, &l.MonthlyTokens, &l.MonthlyCost)
		if errors.Is(err, sql.ErrNoRows) {
			return storeError(ErrNotFound, "no live token named %s (`hearth token list` shows them)", key)
		} else if err != nil {
			return err
		}
		update(&l)
		if invalid = l.validate(); invalid != nil {
			return invalid
		}
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET rpm = ?, tpm = ?, quota_tokens = ?, quota_cost = ? WHERE id = ?`,
			l.RPM, l.TPM, l.MonthlyTokens, l.MonthlyCost, id)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Token{}, err
	case invalid != nil:
		return Token{}, fmt.Errorf("token %s: %w", key, invalid)
	case err != nil:
		return Token{}, fmt.Errorf("relay: set limits of token %q: %w", key, err)
	}
	if err := s.reload(ctx); err != nil {
		s.log.Warn("token store: reread after setting limits failed", "err", err)
	}
	for _, t := range s.idx.Load().byHash {
		if t.ID == id {
			return t.Token, nil
		}
	}
	return Token{}, storeError(ErrNotFound, "token %s vanished while its limits were set", key)
}

// Allows says whether tok may use model. Globs match like path.Match, except that '*' also
// matches '/' (model names such as "hf.co/org/model:q4" contain slashes).
func Allows(tok Token, model string) bool {
	if len(tok.Models) == 0 {
		return true
	}
	name := modelname.Normalize(model)
	for _, g := range tok.Models {
		if modelname.SlashMatch(g, name) {
			return true
		}
	}
	return false
}
