package rag

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/net/html/charset"
)

// decodeBOM turns text that starts with a byte order mark into UTF-8 without it: Windows
// Notepad's "Unicode" and Excel's "Unicode text" are UTF-16 with a BOM, and their NUL bytes
// would otherwise read as binary data. Data without a BOM is returned as it is.
func decodeBOM(data []byte) []byte {
	switch {
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")):
		return data[3:]
	case bytes.HasPrefix(data, []byte("\xff\xfe")):
		return utf16ToUTF8(data[2:], func(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 })
	case bytes.HasPrefix(data, []byte("\xfe\xff")):
		return utf16ToUTF8(data[2:], func(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) })
	}
	return data
}

func utf16ToUTF8(data []byte, unit func([]byte) uint16) []byte {
	units := make([]uint16, len(data)/2)
	for i := range units {
		units[i] = unit(data[2*i:])
	}
	out := make([]byte, 0, len(data))
	for _, r := range utf16.Decode(units) {
		out = utf8.AppendRune(out, r)
	}
	return out
}

// decodeHTML turns a page that is not UTF-8 into UTF-8 by the charset it declares (a <meta>
// tag): pages saved from Russian, Chinese or older sites are often windows-1251, GBK or
// windows-1252. A page without a declaration is read as windows-1252, as browsers do.
func decodeHTML(data []byte) ([]byte, error) {
	if utf8.Valid(data) {
		return data, nil
	}
	enc, name, _ := charset.DetermineEncoding(data, "text/html")
	if name == "utf-8" {
		return data, nil // invalid UTF-8 that says it is UTF-8: needText says so
	}
	out, err := enc.NewDecoder().Bytes(data)
	if err != nil {
		return nil, unreadable("the page could not be decoded as %s, the charset it declares: %v", name, err)
	}
	return out, nil
}
