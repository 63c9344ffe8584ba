package agent

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// udpListener is a stand-in for the sleeping machine's network card.
func udpListener(t *testing.T) (*net.UDPConn, string) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, conn.LocalAddr().String()
}

func TestMagicPacketBytes(t *testing.T) {
	conn, addr := udpListener(t)
	rule := config.WakeRule{Node: "gpu-pc", MAC: "aa:bb:cc:dd:ee:0f", Broadcast: addr}
	if err := SendWake(t.Context(), rule); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xFF}, 6)
	for range 16 {
		want = append(want, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x0f)
	}
	if n != 102 || !bytes.Equal(buf[:n], want) {
		t.Fatalf("got %d bytes % x", n, buf[:n])
	}
	if _, err := MagicPacket(net.HardwareAddr{1, 2, 3}); err == nil {
		t.Error("a 3-byte MAC was accepted")
	}
}
