package ollamasim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// Content types exactly as Ollama's gin handlers and OpenAI middleware send them: gin's c.JSON
// adds a charset, the middleware's own encoder does not.
const (
	ctJSONGin = "application/json; charset=utf-8"
	ctJSON    = "application/json"
	ctNDJSON  = "application/x-ndjson"
	ctSSE     = "text/event-stream"
	ctText    = "text/plain; charset=utf-8"
)

// forever is what Ollama's api.Duration turns a negative keep_alive into.
const forever = time.Duration(math.MaxInt64)

// keepAlive is a request's "keep_alive", read like Ollama's api.Duration: a number of seconds
// or a duration string, negative meaning forever.
type keepAlive struct {
	set bool
	d   time.Duration
}

func (k *keepAlive) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	k.set, k.d = true, defaultKeepAlive
	switch t := v.(type) {
	case float64:
		k.d = time.Duration(t * float64(time.Second))
		if t < 0 {
			k.d = forever
		}
	case string:
		d, err := time.ParseDuration(t)
		if err != nil {
			return err
		}
		k.d = d
		if d < 0 {
			k.d = forever
		}
	default:
		// Ollama's exact (capitalised) message, which clients may show to users.
		//lint:ignore ST1005 Ollama's exact wire text
		return fmt.Errorf("Unsupported type: '%T'", v)
	}
	return nil
}

// numPredict reads options.num_predict without decoding the whole options map.
type numPredict int

func (n *numPredict) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var o struct {
		NumPredict *float64 `json:"num_predict"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	if o.NumPredict != nil {
		*n = numPredict(*o.NumPredict)
	}
	return nil
}

// decodeBody decodes like gin's ShouldBindJSON, whose messages Ollama returns verbatim:
// json.Decoder says io.EOF for an empty body and "unexpected EOF" for a truncated one, where
// json.Unmarshal would not. Unmarshal runs first because it is cheaper on good input.
func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err == nil {
		return nil
	}
	return json.NewDecoder(bytes.NewReader(body)).Decode(v)
}

// writeBody writes a whole answer; status 0 means 200.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	if status != 0 {
		w.WriteHeader(status)
	}
	_, _ = w.Write(body) // the client is gone; nothing to do
}

// ollamaError is the body of gin's c.JSON(status, gin.H{"error": msg}).
func ollamaError(msg string) []byte {
	b := make([]byte, 0, len(msg)+16)
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	return append(b, '}')
}

// openaiError is the body of openai.NewError: {"error":{"message",...,"param":null,"code":null}}.
// The middleware's own errors go through gin's c.JSON (no newline); errors from the handler
// behind it go through json.Encoder (with newline).
func openaiError(msg, typ string, newline bool) []byte {
	b := make([]byte, 0, len(msg)+80)
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"param":null,"code":null}}`...)
	if newline {
		b = append(b, '\n')
	}
	return b
}

// marshalGin is gin's c.JSON body: json.Marshal, no trailing newline.
func marshalGin(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return ollamaError(err.Error())
	}
	return b
}

// marshalEncoder is a json.Encoder body, as the OpenAI middleware writes: with a newline.
func marshalEncoder(v any) []byte {
	return append(marshalGin(v), '\n')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string exactly as encoding/json writes it, HTML escaping
// included, so hand-built chunks are byte-identical to Ollama's.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendTime appends t as encoding/json writes a time.Time.
func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendField appends ,"name":n, omitted when zero like Ollama's omitempty metrics.
func appendField(dst []byte, name string, n int64) []byte {
	if n == 0 {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, n, 10)
}
