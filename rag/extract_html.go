package rag

import (
	"bytes"
	"net/url"
	"strings"

	readability "codeberg.org/readeck/go-readability/v2"
	htmltomarkdown "github.com/JohannesKaufmann/html-to-markdown/v2"
)

// extractHTML keeps a page's readable content (readability drops navigation, ads, scripts),
// turns it into Markdown and splits that at its headings. A page readability finds nothing in
// (a short fragment) is converted whole.
func extractHTML(data []byte) (Extracted, error) {
	base, _ := url.Parse("file:///")
	var body string
	title := ""
	if article, err := readability.FromReader(bytes.NewReader(data), base); err == nil && article.Node != nil {
		var b strings.Builder
		if err := article.RenderHTML(&b); err == nil {
			body = b.String()
		}
		title = strings.TrimSpace(article.Title())
	}
	if strings.TrimSpace(body) == "" {
		body = string(data)
	}
	md, err := htmltomarkdown.ConvertString(body)
	if err != nil {
		return Extracted{}, unreadable("the HTML could not be converted: %v", err)
	}
	doc := extractMarkdown([]byte(md))
	if title != "" {
		doc.Title = title
	}
	if len(doc.Sections) == 0 {
		return Extracted{}, unreadable("no readable text in the page")
	}
	return doc, nil
}
