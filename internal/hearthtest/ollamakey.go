package hearthtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// OllamaKey is a fresh ed25519 key as the ollama CLI keeps one: the private key, the public
// key, and its authorized_keys line with a comment (what ~/.ollama/id_ed25519.pub holds).
func OllamaKey(t testing.TB) (ed25519.PrivateKey, ssh.PublicKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, sp, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " me@laptop"
}

// SignLikeOllama builds the request ollama's api/client.go sends for method and path at ts,
// signed with priv, with this package's own signing code.
func SignLikeOllama(t testing.TB, priv ed25519.PrivateKey, method, path string, ts time.Time) *http.Request {
	t.Helper()
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	unix := strconv.FormatInt(ts.Unix(), 10)
	sig, err := signer.Sign(rand.Reader, []byte(method+","+path+"?ts="+unix))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(method, path+"?ts="+unix, nil)
	r.Header.Set("Authorization", base64.StdEncoding.EncodeToString(signer.PublicKey().Marshal())+":"+base64.StdEncoding.EncodeToString(sig.Blob))
	return r
}

// OllamaHome puts a generated key where the ollama CLI reads it (~/.ollama/id_ed25519)
// and points HOME there; it returns the public key line, as in id_ed25519.pub.
func OllamaHome(t *testing.T) string {
	t.Helper()
	priv, pub, _ := OllamaKey(t)
	home := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ollama"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ollama", "id_ed25519"), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " test@laptop"
}
