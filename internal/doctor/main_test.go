package doctor

import (
	"testing"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestMain fails the package when a goroutine of hearth's outlives its tests.
func TestMain(m *testing.M) { hearthtest.Main(m, hearthtest.Hearth) }
