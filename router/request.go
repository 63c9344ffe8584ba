package router

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// requestFields is what routing reads from a request body.
type requestFields struct {
	model, name string
	// system and user are the raw JSON content of the conversation's opening: the first
	// system message with content before the first user message, and that user message.
	system, user []byte
	hasUser      bool // a user message was found (its content may still be nil)
}

// parseRequest reads what routing needs: the model, and the conversation's opening (system
// prompt and first user message) as its session key. The body must be valid JSON as a whole:
// forwarding a broken body would only return a worse error from the backend.
func parseRequest(body []byte) (PickRequest, *APIError) {
	f, ok := scanRequest(body)
	if !ok {
		var err error
		if f, err = decodeRequest(body); err != nil {
			return PickRequest{}, jsonError(err)
		}
	}
	if f.model == "" {
		f.model = f.name
	}
	if strings.TrimSpace(f.model) == "" {
		return PickRequest{}, &APIError{Status: http.StatusBadRequest, Code: "missing_model",
			Message: `model is required: name it in the "model" field (GET /api/tags or /v1/models lists what is available)`}
	}
	req := PickRequest{Model: NormalizeModel(f.model)}
	if f.user != nil {
		h := fnvString(fnvOffset, req.Model)
		h = fnvBytes(h, f.system)
		h = fnvBytes(h, []byte{0})
		h = fnvBytes(h, f.user)
		req.Session = strconv.FormatUint(h, 36)
	}
	return req, nil
}

// decodeRequest is the reference reading of a body, by encoding/json: parseRequest uses it
// when scanRequest declines a body, and its errors become the 400 answers.
func decodeRequest(body []byte) (requestFields, error) {
	var meta struct {
		Model    string `json:"model"`
		Name     string `json:"name"` // older Ollama clients send "name" to /api/show
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return requestFields{}, err
	}
	f := requestFields{model: meta.Model, name: meta.Name}
	for _, m := range meta.Messages {
		if f.opening(m.Role, m.Content) {
			break
		}
	}
	return f, nil
}

// opening takes one message of the conversation in order and reports whether the opening is
// complete (the first user message was seen).
func (f *requestFields) opening(role string, content []byte) bool {
	if role == "system" && f.system == nil {
		f.system = content
	}
	if role == "user" {
		f.user, f.hasUser = content, true
	}
	return f.hasUser
}

// FNV-1a, 64 bits, as hash/fnv computes it, without the allocation of a hash.Hash.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

// maxScanDepth bounds nesting in scanRequest; deeper bodies go to encoding/json, which allows
// 10000 levels.
const maxScanDepth = 500

// scanRequest reads requestFields in one pass over body, validating all of it as JSON,
// without reflection or copies of the content. It declines (ok false) every body whose
// reading it does not match with certainty to encoding/json's: malformed JSON (whose error
// message comes from encoding/json), a field of the wrong type or null, names with escapes
// or non-ASCII bytes, keys that differ from a field's name only in case (encoding/json
// matches them), and repeated fields.
func scanRequest(body []byte) (f requestFields, ok bool) {
	s := scanner{b: body}
	s.ws()
	if !s.at('{') {
		return f, false
	}
	var seen [3]bool
	ok = s.object(0, func(key []byte) bool {
		field := -1
		switch string(key) {
		case "model":
			field = 0
		case "name":
			field = 1
		case "messages":
			field = 2
		default:
			if mayFold(key, "model", "name", "messages") {
				return false
			}
			return s.value(1)
		}
		if seen[field] {
			return false
		}
		seen[field] = true
		switch field {
		case 0:
			raw, ok := s.plainString()
			f.model = string(raw)
			return ok
		case 1:
			raw, ok := s.plainString()
			f.name = string(raw)
			return ok
		default:
			return s.messages(&f)
		}
	})
	s.ws()
	return f, ok && s.i == len(s.b)
}

// messages reads the "messages" list: role and raw content of each until the opening is
// complete, then only validates the rest.
func (s *scanner) messages(f *requestFields) bool {
	if !s.at('[') {
		return false
	}
	return s.array(1, func() bool {
		if !s.at('{') {
			return false // null or a wrong type: encoding/json decides
		}
		var role string
		var content []byte
		ok := s.object(2, func(key []byte) bool {
			switch string(key) {
			case "role":
				raw, ok := s.plainString()
				role = knownRole(raw)
				return ok
			case "content":
				start := s.i
				if !s.value(3) {
					return false
				}
				content = s.b[start:s.i]
				return true
			default:
				if mayFold(key, "role", "content") {
					return false
				}
				return s.value(3)
			}
		})
		if ok && !f.hasUser {
			f.opening(role, content)
		}
		return ok
	})
}

// mayFold reports whether encoding/json could match key to one of names although it is none
// of them: it matches case-insensitively, with Unicode folding, after unescaping.
func mayFold(key []byte, names ...string) bool {
	for _, c := range key {
		if c == '\\' || c >= 0x80 {
			return true
		}
	}
	for _, n := range names {
		if len(key) == len(n) && strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// scanner is a JSON validator over b, at index i.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) at(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value skips one JSON value of any kind, validating it.
func (s *scanner) value(depth int) bool {
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth, func([]byte) bool { return s.value(depth + 1) })
	case c == '[':
		return s.array(depth, func() bool { return s.value(depth + 1) })
	case c == '"':
		_, ok := s.str()
		return ok
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		return false
	}
}

// object scans an object starting at its '{'; field is called with each raw key and s.i at
// its value, which it must consume.
func (s *scanner) object(depth int, field func(key []byte) bool) bool {
	if depth >= maxScanDepth {
		return false
	}
	s.i++ // '{'
	s.ws()
	if s.at('}') {
		s.i++
		return true
	}
	for {
		if !s.at('"') {
			return false
		}
		key, ok := s.str()
		if !ok {
			return false
		}
		s.ws()
		if !s.at(':') {
			return false
		}
		s.i++
		s.ws()
		if !field(key) {
			return false
		}
		s.ws()
		switch {
		case s.at(','):
			s.i++
			s.ws()
		case s.at('}'):
			s.i++
			return true
		default:
			return false
		}
	}
}

// array scans an array starting at its '['; elem is called with s.i at each element, which
// it must consume.
func (s *scanner) array(depth int, elem func() bool) bool {
	if depth >= maxScanDepth {
		return false
	}
	s.i++ // '['
	s.ws()
	if s.at(']') {
		s.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		s.ws()
		switch {
		case s.at(','):
			s.i++
			s.ws()
		case s.at(']'):
			s.i++
			return true
		default:
			return false
		}
	}
}

// str scans a string starting at its opening quote and returns its raw bytes between the
// quotes. Like encoding/json, it accepts invalid UTF-8 (which decoding replaces).
func (s *scanner) str() ([]byte, bool) {
	b := s.b
	start := s.i + 1
	for i := start; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch {
		case c == '"':
			s.i = i + 1
			return b[start:i], true
		case c < 0x20:
			return nil, false
		case c == '\\':
			i++
			if i >= len(b) {
				return nil, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return nil, false
				}
				i += 4
			default:
				return nil, false
			}
		}
	}
	return nil, false
}

// plainString scans a string that decodes to its raw bytes (printable ASCII, no escapes) and
// returns them. Anything else (null included) declines.
func (s *scanner) plainString() ([]byte, bool) {
	if !s.at('"') {
		return nil, false
	}
	raw, ok := s.str()
	if !ok {
		return nil, false
	}
	for _, c := range raw {
		if c == '\\' || c >= 0x7f {
			return nil, false
		}
	}
	return raw, true
}

// knownRole is the role routing cares about, without a copy: "system", "user" or "".
func knownRole(raw []byte) string {
	switch string(raw) {
	case "system":
		return "system"
	case "user":
		return "user"
	default:
		return ""
	}
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return false
	}
	s.i += len(word)
	return true
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		if i+1 >= len(b) || !isDigit(b[i+1]) {
			return false
		}
		i = digits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return false
		}
		i = digits(b, i)
	}
	s.i = i
	return true
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
