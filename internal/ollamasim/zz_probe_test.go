package ollamasim

import (
	"testing"

	"github.com/ollama/ollama/api"
)

func TestProbe(t *testing.T) { _ = api.ChatResponse{} }
