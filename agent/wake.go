package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hearthlab/hearth/internal/config"
)

// MagicPacket is the Wake-on-LAN frame for mac: six 0xFF bytes, then the MAC sixteen
// times (102 bytes).
func MagicPacket(mac net.HardwareAddr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("wake: %q is not a 6-byte MAC address", mac.String())
	}
	p := make([]byte, 0, 102)
	for range 6 {
		p = append(p, 0xFF)
	}
	for range 16 {
		p = append(p, mac...)
	}
	return p, nil
}

// SendWake sends the magic packet for rule's MAC to its broadcast address over UDP. Go
// sets SO_BROADCAST on IPv4 UDP sockets, so a LAN broadcast address works as is.
func SendWake(ctx context.Context, rule config.WakeRule) error {
	mac, err := net.ParseMAC(rule.MAC)
	if err != nil {
		return fmt.Errorf("wake %s: wake.mac %q: %w", rule.Node, rule.MAC, err)
	}
	packet, err := MagicPacket(mac)
	if err != nil {
		return err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", rule.Broadcast)
	if err != nil {
		return fmt.Errorf("wake %s: %w", rule.Node, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	} else {
		_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	}
	n, err := conn.Write(packet)
	if err == nil && n != len(packet) {
		err = errors.New("short write")
	}
	if err != nil {
		return fmt.Errorf("wake %s: send to %s: %w", rule.Node, rule.Broadcast, err)
	}
	return nil
}
