package relay

// Usage is the tokens one request used, as the upstream counted them or, when it did not,
// as estimated from the text.
type Usage struct {
	PromptTokens     int  `json:"prompt_tokens"`
	CompletionTokens int  `json:"completion_tokens"`
	Estimated        bool `json:"estimated,omitempty"`
}
