package ragtest

import (
	"bytes"
	"crypto/md5"
	"crypto/rc4"
	"fmt"
	"strings"
)

// PDF writes a real PDF 1.4 file: one page per entry of pages, each line of a page set in
// Helvetica. With a user password the file is encrypted (standard security handler, RC4
// 40-bit, revision 2), as "protect with password" in older office suites does.
func PDF(title string, pages [][]string, password string) []byte {
	var objs []string
	// 1 catalog, 2 pages, 3 font, 4 info, then per page: page, contents.
	n := len(pages)
	kids := make([]string, n)
	for i := range pages {
		kids[i] = fmt.Sprintf("%d 0 R", 5+2*i)
	}
	objs = append(objs,
		"<< /Type /Catalog /Pages 2 0 R >>",
		fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), n),
		"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
		"", // info, below: its string is encrypted too
	)
	id := fmt.Sprintf("%x", md5.Sum([]byte(title)))[:16]
	var key []byte
	var o, u []byte
	if password != "" {
		o, u, key = securityR2(password, id)
	}
	enc := func(num int, s string) string {
		if key == nil {
			return s
		}
		return rc4Object(key, num, s)
	}
	objs[3] = fmt.Sprintf("<< /Title %s /Producer (hearth ragtest) >>", pdfString(enc(4, title)))
	var streams = map[int]string{}
	for i, lines := range pages {
		var b strings.Builder
		b.WriteString("BT /F1 12 Tf 72 720 Td 14 TL\n")
		for _, l := range lines {
			fmt.Fprintf(&b, "%s Tj T*\n", pdfString(l))
		}
		b.WriteString("ET\n")
		pageNum, contentNum := 5+2*i, 6+2*i
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", contentNum),
			"")
		streams[contentNum] = enc(contentNum, b.String())
		_ = pageNum
	}
	var out bytes.Buffer
	out.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	offsets := make([]int, len(objs)+2)
	for i, body := range objs {
		num := i + 1
		offsets[num] = out.Len()
		if s, ok := streams[num]; ok {
			fmt.Fprintf(&out, "%d 0 obj\n<< /Length %d >>\nstream\n%s\nendstream\nendobj\n", num, len(s), s)
			continue
		}
		fmt.Fprintf(&out, "%d 0 obj\n%s\nendobj\n", num, body)
	}
	encNum := 0
	if key != nil {
		encNum = len(objs) + 1
		offsets[encNum] = out.Len()
		fmt.Fprintf(&out, "%d 0 obj\n<< /Filter /Standard /V 1 /R 2 /Length 40 /P -44 /O %s /U %s >>\nendobj\n", encNum, pdfHex(o), pdfHex(u))
	}
	size := len(objs) + 1
	if encNum > 0 {
		size++
	}
	xref := out.Len()
	fmt.Fprintf(&out, "xref\n0 %d\n0000000000 65535 f \n", size)
	for num := 1; num < size; num++ {
		fmt.Fprintf(&out, "%010d 00000 n \n", offsets[num])
	}
	trailer := fmt.Sprintf("<< /Size %d /Root 1 0 R /Info 4 0 R /ID [<%x> <%x>]", size, id, id)
	if encNum > 0 {
		trailer += fmt.Sprintf(" /Encrypt %d 0 R", encNum)
	}
	fmt.Fprintf(&out, "trailer\n%s >>\nstartxref\n%d\n%%%%EOF\n", trailer, xref)
	return out.Bytes()
}

func pdfString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`, "\r", `\r`, "\n", `\n`)
	return "(" + r.Replace(s) + ")"
}

func pdfHex(b []byte) string { return fmt.Sprintf("<%x>", b) }

var padding = []byte{0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
	0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A}

func pad(pw string) []byte { return append([]byte(pw), padding...)[:32] }

// securityR2 computes O, U and the file key (PDF 32000-1 algorithms 2, 3 and 4), with the
// owner password equal to the user password.
func securityR2(password, id string) (o, u, key []byte) {
	ownerKey := md5.Sum(pad(password))
	c, _ := rc4.NewCipher(ownerKey[:5])
	o = make([]byte, 32)
	c.XORKeyStream(o, pad(password))
	h := md5.New()
	h.Write(pad(password))
	h.Write(o)
	p := int32(-44)
	h.Write([]byte{byte(p), byte(p >> 8), byte(p >> 16), byte(p >> 24)})
	h.Write([]byte(id))
	key = h.Sum(nil)[:5]
	c, _ = rc4.NewCipher(key)
	u = make([]byte, 32)
	c.XORKeyStream(u, padding)
	return o, u, key
}

func rc4Object(key []byte, num int, s string) string {
	k := append(append([]byte(nil), key...), byte(num), byte(num>>8), byte(num>>16), 0, 0)
	sum := md5.Sum(k)
	c, _ := rc4.NewCipher(sum[:min(len(key)+5, 16)])
	out := make([]byte, len(s))
	c.XORKeyStream(out, []byte(s))
	return string(out)
}
