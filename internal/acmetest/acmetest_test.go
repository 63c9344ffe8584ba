package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestStart(t *testing.T) {
	ca := Start(t, Options{HTTPPort: 5002, TLSPort: 5001})

	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.ServerRootPool()}},
	}
	t.Cleanup(client.CloseIdleConnections)
	resp, err := client.Get(ca.DirectoryURL)
	if err != nil {
		t.Fatalf("GET directory: %v", err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || dir["newOrder"] == nil || dir["newNonce"] == nil {
		t.Fatalf("directory: status %d, %v", resp.StatusCode, dir)
	}

	onDisk, err := os.ReadFile(ca.ServerRootFile)
	if err != nil || string(onDisk) != string(ca.ServerRootPEM) {
		t.Fatalf("ServerRootFile does not hold ServerRootPEM: %v", err)
	}

	block, _ := pem.Decode(ca.IssuerRootPEM())
	if block == nil {
		t.Fatal("IssuerRootPEM is not PEM")
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !root.IsCA {
		t.Fatalf("issuer root: %v (IsCA %v)", err, root != nil && root.IsCA)
	}
	if root.Equal(mustParsePEM(t, ca.ServerRootPEM)) {
		t.Fatal("issuer root and server root must differ")
	}

	for _, tc := range []struct {
		qtype uint16
		want  int
	}{{dns.TypeA, 1}, {dns.TypeAAAA, 0}} {
		q := new(dns.Msg)
		q.SetQuestion("relay.test.", tc.qtype)
		in, _, err := (&dns.Client{Net: "tcp", Timeout: time.Second}).Exchange(q, ca.DNSAddr)
		if err != nil {
			t.Fatalf("DNS %s: %v", dns.TypeToString[tc.qtype], err)
		}
		if len(in.Answer) != tc.want {
			t.Fatalf("DNS %s: %d answers, want %d: %v", dns.TypeToString[tc.qtype], len(in.Answer), tc.want, in.Answer)
		}
		if tc.want == 1 && in.Answer[0].(*dns.A).A.String() != "127.0.0.1" {
			t.Fatalf("DNS A: %v, want 127.0.0.1", in.Answer[0])
		}
	}
}

func mustParsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// After the test, every port Start opened is free again.
func TestStartReleasesPorts(t *testing.T) {
	var ca *CA
	t.Run("start", func(t *testing.T) { ca = Start(t, Options{HTTPPort: 5002, TLSPort: 5001}) })
	u, err := url.Parse(ca.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{u.Host, ca.DNSAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("tcp %s still taken: %v", addr, err)
		}
		ln.Close()
	}
	pc, err := net.ListenPacket("udp", ca.DNSAddr)
	if err != nil {
		t.Fatalf("udp %s still taken: %v", ca.DNSAddr, err)
	}
	pc.Close()
}
