package tokens

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// The `ollama` CLI cannot send a Bearer token, but with OLLAMA_AUTH=1 it signs every request
// with ~/.ollama/id_ed25519 (github.com/ollama/ollama api/client.go and auth/auth.go, v0.17.4):
//
//	challenge:     "METHOD,PATH?ts=UNIXSECONDS"  (PATH as the client names it, no query)
//	URL:           PATH?ts=UNIXSECONDS
//	Authorization: base64(ssh wire public key) ":" base64(raw ed25519 signature of challenge)
//
// The body is not signed, so the signature proves who sent the request and when, not what it
// asks: TLS protects the rest, and the timestamp window bounds replays.

// DefaultOllamaWindow is how far a signature's timestamp may be from the relay's clock, each way.
const DefaultOllamaWindow = 5 * time.Minute

// Errors of VerifyOllamaSignature.
var (
	ErrMalformedSignature = errors.New("not an ollama signature")
	ErrBadSignature       = errors.New("ollama signature does not verify")
	ErrStaleSignature     = errors.New("ollama signature timestamp outside the window")
)

// VerifyOllamaSignature checks the ollama CLI's signature on r and returns the signer's public
// key in ssh wire format (for Store.CheckOllamaKey). window <= 0 means DefaultOllamaWindow.
func VerifyOllamaSignature(r *http.Request, now time.Time, window time.Duration) ([]byte, error) {
	if window <= 0 {
		window = DefaultOllamaWindow
	}
	keyPart, sigPart, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), ":")
	if !ok || keyPart == "" || sigPart == "" {
		return nil, fmt.Errorf("%w: the Authorization header is not PUBLICKEY:SIGNATURE", ErrMalformedSignature)
	}
	keyBytes, err := base64.StdEncoding.DecodeString(keyPart)
	if err != nil {
		return nil, fmt.Errorf("%w: public key is not base64", ErrMalformedSignature)
	}
	pub, err := ssh.ParsePublicKey(keyBytes)
	if err != nil || pub.Type() != ssh.KeyAlgoED25519 {
		return nil, fmt.Errorf("%w: the public key is not ssh-ed25519", ErrMalformedSignature)
	}
	sig, err := base64.StdEncoding.DecodeString(sigPart)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64", ErrMalformedSignature)
	}
	ts := r.URL.Query().Get("ts")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: the URL has no ?ts=UNIXSECONDS", ErrMalformedSignature)
	}
	challenge := r.Method + "," + r.URL.Path + "?ts=" + ts
	if err := pub.Verify([]byte(challenge), &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: sig}); err != nil {
		return nil, ErrBadSignature
	}
	// Checked after the signature, so that a stale error means "your clock", never "a forger".
	signed := time.Unix(unix, 0)
	if skew := now.Sub(signed); skew > window || skew < -window {
		side := "before"
		if skew < 0 {
			side, skew = "after", -skew
		}
		return nil, fmt.Errorf("%w: signed at %s, %s %s the relay's time (allowed ±%s)", ErrStaleSignature,
			signed.UTC().Format(time.RFC3339), skew.Round(time.Second), side, window)
	}
	return keyBytes, nil
}

// parseOllamaKey reads the line of ~/.ollama/id_ed25519.pub ("ssh-ed25519 AAAA... comment";
// the bare "AAAA..." part is accepted too) and returns the key and the line to store.
func parseOllamaKey(line string) (ssh.PublicKey, string, error) {
	line = strings.TrimSpace(line)
	const want = `give the one line of ~/.ollama/id_ed25519.pub, "ssh-ed25519 AAAA... comment"`
	if strings.Contains(line, "PRIVATE KEY") {
		return nil, "", fmt.Errorf("ollama key: that is a private key, keep it secret: %s", want)
	}
	if !strings.ContainsAny(line, " \t") {
		line = ssh.KeyAlgoED25519 + " " + line
	}
	pub, comment, _, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, "", fmt.Errorf("ollama key: not an ssh public key: %s", want)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, "", fmt.Errorf("ollama key: more than one key given: %s", want)
	}
	if pub.Type() != ssh.KeyAlgoED25519 {
		return nil, "", fmt.Errorf("ollama key: a %s key; the ollama CLI signs with ssh-ed25519: %s", pub.Type(), want)
	}
	out := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		out += " " + comment
	}
	return pub, out, nil
}

func sshFingerprint(pub ssh.PublicKey) string { return ssh.FingerprintSHA256(pub) }
