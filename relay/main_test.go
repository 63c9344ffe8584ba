package relay

import (
	"testing"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestMain fails the package when a goroutine of hearth's outlives its tests, or one of
// frp or yamux, which its servers run.
func TestMain(m *testing.M) {
	hearthtest.Main(m, hearthtest.Hearth,
		"github.com/fatedier/", "github.com/hashicorp/yamux")
}
