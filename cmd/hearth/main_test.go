package main

import (
	"testing"

	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestMain fails the package when a goroutine of hearth's outlives its tests, or one of
// frp, yamux or memberlist, which its servers run.
func TestMain(m *testing.M) {
	hearthtest.Main(m, hearthtest.Hearth,
		"github.com/fatedier/", "github.com/hashicorp/yamux", "github.com/hashicorp/memberlist")
}
