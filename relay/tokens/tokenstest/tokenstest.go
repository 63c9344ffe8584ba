// Package tokenstest opens token stores for the tests of the packages that use one (auth,
// usage, the relay root). Only tests import it.
package tokenstest

import (
	"testing"

	"github.com/hearthlab/hearth/relay/tokens"
)

// Open opens a token store at path, closed when the test ends.
func Open(t testing.TB, path string, opts ...tokens.StoreOption) *tokens.Store {
	t.Helper()
	s, err := tokens.Open(path, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
