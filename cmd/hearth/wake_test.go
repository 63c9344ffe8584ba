package main

import (
	"bytes"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hearthlab/hearth/agent"
	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/hearthtest"
	"github.com/hearthlab/hearth/router"
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

	// gpu-box has no wake rules: asked there, the command finds the NAS's in the cluster.
	box := cfg
	box.Node.Name, box.Wake = "gpu-box", nil
	box.Cluster.Join = []string{a.GossipAddr()}
	b, err := agent.New(box, slog.New(slog.DiscardHandler), "test")
	if err != nil {
		t.Fatal(err)
	}
	hearthtest.Run(t, "gpu-box's agent", b.Run)
	knows := func(at, node string) func() bool {
		return func() bool {
			api := agentAPI{url: at}
			v, err := api.cluster(t.Context())
			return err == nil && slices.ContainsFunc(v.Nodes, func(n router.NodeView) bool { return n.Name == node && n.API != "" })
		}
	}
	hearthtest.Eventually(t, "gpu-box knows the NAS's API", 10*time.Second, knows("http://"+b.Addr().String(), "nas"))
	hearthtest.Eventually(t, "the NAS knows gpu-box's API", 10*time.Second, knows("http://"+a.Addr().String(), "gpu-box"))

	out, err := run("wake", "gpu-pc", "--agent", "http://"+b.Addr().String())
	if err != nil || out != "sent the Wake-on-LAN packet for gpu-pc (by nas); `hearth status` shows it when it joins\n" {
		t.Fatalf("wake through gpu-box: %v\n%s", err, out)
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
	if _, err := run("wake", "gpu-box", "--agent", "http://"+a.Addr().String()); err == nil || !strings.Contains(err.Error(), `no wake rule for "gpu-box"`) ||
		!strings.Contains(err.Error(), "nor has any other agent of its cluster (gpu-box)") {
		t.Errorf("wake of a node without a wake rule: %v", err)
	}
}
