package chain

import (
	"testing"

	"github.com/hearthlab/hearth/relay/tokens"
)

// openTestStore opens a token store at path, closed when the test ends.
func openTestStore(t *testing.T, path string, opts ...tokens.StoreOption) *tokens.Store {
	t.Helper()
	s, err := tokens.Open(path, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
