package manual

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/text/encoding/charmap"
)

// pageTexts reads the text of each page of a PDF that this package wrote: objects with direct
// stream lengths, a page tree whose kids are the pages, content streams plain or Flate-compressed,
// text shown with Tj/TJ in the core fonts' WinAnsi encoding. It is not a general PDF reader; it
// is what lets the table of contents say on which page each entry starts (and the tests read the
// manual back).
func pageTexts(pdf []byte) ([]string, error) {
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		return nil, fmt.Errorf("not a PDF")
	}
	objs := map[int][]byte{}    // object number -> dictionary (up to "stream" or "endobj")
	streams := map[int][]byte{} // object number -> raw stream data
	for _, loc := range objRE.FindAllSubmatchIndex(pdf, -1) {
		num, _ := strconv.Atoi(string(pdf[loc[2]:loc[3]]))
		body := pdf[loc[1]:]
		end := bytes.Index(body, []byte("endobj"))
		st := bytes.Index(body, []byte("stream"))
		if st >= 0 && (end < 0 || st < end) {
			dict := body[:st]
			objs[num] = dict
			m := lengthRE.FindSubmatch(dict)
			if m == nil {
				return nil, fmt.Errorf("object %d: stream without a direct /Length", num)
			}
			n, _ := strconv.Atoi(string(m[1]))
			data := body[st+len("stream"):]
			data = bytes.TrimPrefix(bytes.TrimPrefix(data, []byte("\r")), []byte("\n"))
			if n > len(data) {
				return nil, fmt.Errorf("object %d: stream shorter than its /Length", num)
			}
			streams[num] = data[:n]
			continue
		}
		if end < 0 {
			return nil, fmt.Errorf("object %d has no end", num)
		}
		objs[num] = body[:end]
	}
	var pages []int
	for _, dict := range objs {
		if pagesRE.Match(dict) {
			for _, k := range refRE.FindAllSubmatch(kidsRE.Find(dict), -1) {
				n, _ := strconv.Atoi(string(k[1]))
				pages = append(pages, n)
			}
			break
		}
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("no page tree")
	}
	out := make([]string, 0, len(pages))
	for _, pn := range pages {
		m := contentsRE.FindSubmatch(objs[pn])
		if m == nil {
			out = append(out, "")
			continue
		}
		cn, _ := strconv.Atoi(string(m[1]))
		data, ok := streams[cn]
		if !ok {
			return nil, fmt.Errorf("page %d: content object %d missing", pn, cn)
		}
		if bytes.Contains(objs[cn], []byte("/FlateDecode")) {
			zr, err := zlib.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", pn, err)
			}
			data, err = io.ReadAll(zr)
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", pn, err)
			}
		}
		out = append(out, showText(data))
	}
	return out, nil
}

var (
	objRE          = regexp.MustCompile(`(?m)^(\d+) 0 obj\s*`)
	lengthRE       = regexp.MustCompile(`/Length (\d+)`)
	pagesRE        = regexp.MustCompile(`/Type\s*/Pages\b`)
	kidsRE         = regexp.MustCompile(`/Kids\s*\[[^\]]*\]`)
	refRE          = regexp.MustCompile(`(\d+) 0 R`)
	contentsRE     = regexp.MustCompile(`/Contents (\d+) 0 R`)
	winAnsiDecoder = charmap.Windows1252.NewDecoder()
)

// showText returns the strings a content stream shows, one line per Tj (or TJ array).
func showText(content []byte) string {
	var lines []string
	var pending []string // strings since the last text operator
	for i := 0; i < len(content); i++ {
		switch c := content[i]; c {
		case '(':
			s, next := literal(content, i)
			pending = append(pending, s)
			i = next - 1
		case 'T':
			if i+1 < len(content) && (content[i+1] == 'j' || content[i+1] == 'J') && len(pending) > 0 {
				line, err := winAnsiDecoder.String(strings.Join(pending, ""))
				if err != nil {
					line = strings.Join(pending, "")
				}
				lines = append(lines, line)
				pending = pending[:0]
			}
		}
	}
	return strings.Join(lines, "\n")
}

// literal reads the PDF string literal starting at content[i] == '(' and returns it unescaped
// and the index after its closing parenthesis.
func literal(content []byte, i int) (string, int) {
	var b []byte
	depth := 0
	for j := i; j < len(content); j++ {
		c := content[j]
		switch {
		case c == '\\' && j+1 < len(content):
			j++
			switch e := content[j]; e {
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case '\n':
			default:
				if e >= '0' && e <= '7' {
					v, k := 0, 0
					for ; k < 3 && j+k < len(content) && content[j+k] >= '0' && content[j+k] <= '7'; k++ {
						v = v*8 + int(content[j+k]-'0')
					}
					b = append(b, byte(v))
					j += k - 1
				} else {
					b = append(b, e)
				}
			}
		case c == '(':
			if depth > 0 {
				b = append(b, c)
			}
			depth++
		case c == ')':
			depth--
			if depth == 0 {
				return string(b), j + 1
			}
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	return string(b), len(content)
}
