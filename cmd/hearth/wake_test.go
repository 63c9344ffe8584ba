package main

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
)

// TestWakeCommand: `hearth wake NODE` makes the agent with NODE's wake rule send the magic
// packet (six 0xFF bytes, then the MAC sixteen times) to the rule's broadcast address.
func TestWakeCommand(t *testing.T) {
	lan, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lan.Close() })
	cfg := config.DefaultAgent()
	cfg.Node.Name, cfg.Node.Listen = "nas", "127.0.0.1:0"
	cfg.Cluster.Bind, cfg.Cluster.Timings = "127.0.0.1:0", "fast"
	cfg.Cluster.Secret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	cfg.Wake = []config.WakeRule{{Node: "gpu-pc", MAC: "aa:bb:cc:dd:ee:0f", Broadcast: lan.LocalAddr().String(), Wait: time.Minute, Policy: "hold"}}
	a, err := agent.New(cfg, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "agent", a.Run)

	out, err := run("wake", "gpu-pc", "--agent", "http://"+a.Addr().String())
	if err != nil || out != "sent the Wake-on-LAN packet for gpu-pc; `hearth status` shows it when it joins\n" {
		t.Fatalf("wake: %v\n%s", err, out)
	}
	buf := make([]byte, 1024)
	if err := lan.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := lan.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no packet on the broadcast address: %v", err)
	}
	want := bytes.Repeat([]byte{0xFF}, 6)
	for range 16 {
		want = append(want, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f)
	}
	if n != 102 || !bytes.Equal(buf[:n], want) {
		t.Errorf("got %d bytes % x, want the 102-byte magic packet % x", n, buf[:n], want)
	}
	if _, err := run("wake", "gpu-box", "--agent", "http://"+a.Addr().String()); err == nil || !strings.Contains(err.Error(), `no wake rule for "gpu-box"`) {
		t.Errorf("wake of a node without a wake rule: %v", err)
	}
}
