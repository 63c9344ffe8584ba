package ollamasim

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Model is one model in the sim's store.
type Model struct {
	// Name is the model's name, "tiny" or "tiny:latest"; it is stored normalised the way
	// Ollama shows it ("tiny:latest", "user/m:tag").
	Name string
	// Size is the size on disk in bytes, reported by /api/tags and /api/ps. Default 1 GiB.
	Size int64
	// LoadDelay is how long a cold load takes when the model is not loaded. Default 0.
	LoadDelay time.Duration
	// EmbedDim is the length of the model's embeddings. Default 8.
	EmbedDim int
	// Family is details.family and general.architecture. Default "llama".
	Family string
	// ParameterSize is details.parameter_size. Default derived from Size ("2.1B" for 1 GiB).
	ParameterSize string
	// QuantizationLevel is details.quantization_level. Default "Q4_K_M".
	QuantizationLevel string
	// ContextLength is /api/ps context_length and <family>.context_length. Default 4096.
	ContextLength int
}

// Config sets up a Server. The zero value is usable: one slot, no models.
type Config struct {
	// Models are in the store from the start.
	Models []Model
	// Parallel is how many generations and embeddings run at once on this server, like
	// OLLAMA_NUM_PARALLEL but server-wide. Default 1.
	Parallel int
	// MaxQueue is how many requests may wait for a slot; one more is answered 503 "server
	// busy" like Ollama's OLLAMA_MAX_QUEUE. Default 512; negative means no queue at all.
	MaxQueue int
	// MaxLoaded is how many models may be loaded at once; loading another evicts the least
	// recently used idle one, or waits for one to become idle. Default 0, unlimited.
	MaxLoaded int
	// TokenDelay is the pause before each generated token. Default 0.
	TokenDelay time.Duration
	// Tokens is how many tokens a response has ("tok0 " … ). A request's num_predict or
	// max_tokens, when smaller, wins and the response ends with done_reason "length".
	// Default 8.
	Tokens int
	// KeepAlive is how long a model stays loaded after its last use; a request's
	// "keep_alive" overrides it. Default 5m; negative keeps models loaded forever; use
	// time.Nanosecond to unload right after each request.
	KeepAlive time.Duration
	// Version is what /api/version reports. Default "0.17.4".
	Version string
	// RecordLimit caps how many requests Requests keeps (the newest). Default 1000;
	// negative turns recording off.
	RecordLimit int
	// Logger receives the sim's own problems (a failed re-listen). Nil discards.
	Logger *slog.Logger
}

const (
	defaultTokens      = 8
	defaultMaxQueue    = 512
	defaultKeepAlive   = 5 * time.Minute
	defaultVersion     = "0.17.4"
	defaultRecordLimit = 1000
	defaultSize        = 1 << 30
	defaultEmbedDim    = 8
	defaultContext     = 4096
	defaultFamily      = "llama"
	defaultQuant       = "Q4_K_M"
)

// withDefaults is the one place Config defaults live.
func (c Config) withDefaults() Config {
	if c.Parallel <= 0 {
		c.Parallel = 1
	}
	switch {
	case c.MaxQueue == 0:
		c.MaxQueue = defaultMaxQueue
	case c.MaxQueue < 0:
		c.MaxQueue = 0
	}
	if c.MaxLoaded < 0 {
		c.MaxLoaded = 0
	}
	if c.Tokens <= 0 {
		c.Tokens = defaultTokens
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = defaultKeepAlive
	}
	if c.KeepAlive < 0 {
		c.KeepAlive = forever
	}
	if c.Version == "" {
		c.Version = defaultVersion
	}
	if c.RecordLimit == 0 {
		c.RecordLimit = defaultRecordLimit
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (m Model) withDefaults() Model {
	if m.Size <= 0 {
		m.Size = defaultSize
	}
	if m.EmbedDim <= 0 {
		m.EmbedDim = defaultEmbedDim
	}
	if m.Family == "" {
		m.Family = defaultFamily
	}
	if m.ParameterSize == "" {
		m.ParameterSize = humanNumber(m.Size * 2)
	}
	if m.QuantizationLevel == "" {
		m.QuantizationLevel = defaultQuant
	}
	if m.ContextLength <= 0 {
		m.ContextLength = defaultContext
	}
	if n, ok := parseName(m.Name); ok {
		m.Name = n.display
	}
	return m
}

// humanNumber formats a parameter count the way Ollama's details do ("115K", "2.1B").
func humanNumber(n int64) string {
	units := []struct {
		div    float64
		suffix string
	}{{1e12, "T"}, {1e9, "B"}, {1e6, "M"}, {1e3, "K"}}
	for _, u := range units {
		if f := float64(n); f >= u.div {
			s := strconv.FormatFloat(f/u.div, 'f', 1, 64)
			return strings.TrimSuffix(s, ".0") + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// digestOf is the model's manifest digest: 64 hex digits, without "sha256:" as /api/tags shows it.
func digestOf(m Model) string {
	sum := sha256.Sum256([]byte(m.Name + "\x00" + strconv.FormatInt(m.Size, 10)))
	return hex.EncodeToString(sum[:])
}

const (
	defaultHost      = "registry.ollama.ai"
	defaultNamespace = "library"
	defaultTag       = "latest"
	missingPart      = "!MISSING!"
)

// modelName is a model name split the way Ollama's types/model.ParseName splits it.
type modelName struct {
	host, namespace, model, tag string
	display                     string // Ollama's DisplayShortest: "tiny:latest", "user/m:tag"
	key                         string // lookups are case-insensitive, like getExistingName
}

// parseName parses and normalises a model name; ok is false for names Ollama calls invalid.
func parseName(s string) (modelName, bool) {
	var n modelName
	if i := strings.LastIndexByte(s, ':'); i > strings.LastIndexByte(s, '/') {
		s, n.tag = s[:i], orMissing(s[i+1:])
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		s, n.model = orMissing(s[:i]), orMissing(s[i+1:])
		if j := strings.LastIndexByte(s, '/'); j >= 0 {
			n.host, n.namespace = orMissing(s[:j]), orMissing(s[j+1:])
			if _, h, ok := strings.Cut(n.host, "://"); ok {
				n.host = h
			}
		} else {
			n.namespace = s
		}
	} else {
		n.model = s
	}
	if n.host == "" {
		n.host = defaultHost
	}
	if n.namespace == "" {
		n.namespace = defaultNamespace
	}
	if n.tag == "" {
		n.tag = defaultTag
	}
	if n.model == "" {
		n.model = missingPart
	}
	switch {
	case !strings.EqualFold(n.host, defaultHost):
		n.display = n.host + "/" + n.namespace + "/" + n.model + ":" + n.tag
	case !strings.EqualFold(n.namespace, defaultNamespace):
		n.display = n.namespace + "/" + n.model + ":" + n.tag
	default:
		n.display = n.model + ":" + n.tag
	}
	n.key = strings.ToLower(n.display)
	ok := validPart(n.host, 350, ".:") && validPart(n.namespace, 80, "") &&
		validPart(n.model, 80, ".") && validPart(n.tag, 80, ".")
	return n, ok
}

// full is the name with every part, as Ollama's errors about unqualified names print it.
func (n modelName) full() string {
	return n.host + "/" + n.namespace + "/" + n.model + ":" + n.tag
}

func orMissing(s string) string {
	if s == "" {
		return missingPart
	}
	return s
}

// validPart mirrors Ollama's isValidPart: a letter, digit or underscore first, then those,
// '-', '_' and the extra characters the part allows.
func validPart(s string, maxLen int, extra string) bool {
	if len(s) < 1 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
		if alnum || i > 0 && (c == '-' || strings.IndexByte(extra, c) >= 0) {
			continue
		}
		return false
	}
	return true
}
