package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hearthlab/hearth/internal/loadgen"
)

// target is where a load goes: the vendor itself or the relay in front of it.
type target struct {
	name     string
	client   *http.Client
	url      string // the chat completions endpoint
	auth     string // the Authorization header
	answered atomic.Int64
}

// load sends up to n requests to t from conc workers for at most maxTime; the CPU difference
// between targets is the relay's share, TLS to it included.
func load(t *target, body []byte, stream bool, conc, n int, maxTime time.Duration) loadgen.Result {
	return loadgen.Run(conc, n, maxTime, func(buf []byte) (time.Duration, time.Duration, error) {
		lat, ttfb, err := once(t, body, stream, buf)
		if err != nil {
			err = fmt.Errorf("%s: %w", t.name, err)
		}
		return lat, ttfb, err
	})
}

var doneEvent = []byte("data: [DONE]\n\n")

// once makes one chat request and reads the whole answer. ttfb is the time to the first read
// that carried body bytes: the first chunk of a stream. A stream must end with [DONE].
func once(t *target, body []byte, stream bool, buf []byte) (lat, ttfb time.Duration, err error) {
	req, err := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", t.auth)
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	t.answered.Add(1)
	var tail []byte // the last bytes read, to check the stream's end
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if ttfb == 0 {
				ttfb = time.Since(start)
			}
			tail = append(tail, buf[:n]...)
			if len(tail) > 64 {
				tail = tail[len(tail)-64:]
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, 0, rerr
		}
	}
	lat = time.Since(start)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("status %d: %q", resp.StatusCode, tail)
	}
	if stream && !bytes.HasSuffix(tail, doneEvent) {
		return 0, 0, fmt.Errorf("stream did not end with [DONE]: ...%q", tail)
	}
	return lat, ttfb, nil
}
