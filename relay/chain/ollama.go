package chain

import "github.com/hearthlab/hearth/internal/config"

// ollamaChannel is an Ollama (a LAN box, a private server) through its OpenAI-compatible API:
// POST {base_url}/v1/chat/completions, with a key only when it sits behind one.
type ollamaChannel struct {
	*openAIChannel
}

var (
	_ Channel = (*ollamaChannel)(nil)
	_ keyless = (*ollamaChannel)(nil)
)

func newOllamaChannel(cfg config.Channel) *ollamaChannel {
	o := newOpenAIChannel(cfg)
	o.path = "/v1/chat/completions"
	return &ollamaChannel{o}
}

func (o *ollamaChannel) Kind() string { return "ollama" }

func (o *ollamaChannel) keyless() {}
