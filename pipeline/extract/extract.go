// Package extract turns a raw document (an upload, a fetched file) into
// plain text and a title.
//
// Supported formats: plain text, Markdown, HTML, JSON, CSV, PDF (pdf*.go),
// DOCX, PPTX, XLSX, EPUB (office.go over zip.go) and RTF (rtf.go), all in
// pure Go. Detect picks the format from the content type first (its
// parameters, such as charset, ignored) and the file extension second;
// DetectData then tries the document's first bytes (Sniff).
//
// Text formats must be valid UTF-8 (Invalid otherwise). Output is always
// valid UTF-8. Errors never contain document text: they name the format
// and, at most, a position.
//
// Compressed formats are bounded before any text is written: what a PDF's
// streams or a zip's parts decode to, together, is at most InflateRatio
// times the file plus InflateSlack (a PDF's parsed objects count too: they
// may overlap); a PDF has at most MaxPDFPages pages; a
// zip at most MaxZipEntries entries, each inflating at most MaxZipRatio
// times. ExtractDocument also gives where each page of a PDF (or slide of
// a PPTX) starts in the text.
//
// Output is bounded while it is written. CSV and JSON repeat labels (a
// column's header, a value's key path) before every value, so a small file
// can stand for a huge text; Extract writes at most MaxText bytes of text
// (TextRatio times the file plus TextSlack, and never more than the document
// limit it is given) and stops with an error of kind TooLarge the moment the
// text would pass it. Labels are cut to MaxLabelBytes and titles to
// MaxTitleBytes.
package extract

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/apiaryhq/apiary"
)

// Format is a supported document format.
type Format string

const (
	Text     Format = "txt"
	Markdown Format = "md"
	HTML     Format = "html"
	JSON     Format = "json"
	CSV      Format = "csv"
	PDF      Format = "pdf"
	DOCX     Format = "docx"
	PPTX     Format = "pptx"
	XLSX     Format = "xlsx"
	EPUB     Format = "epub"
	RTF      Format = "rtf"
)

// binaryFormats are read as bytes, not as UTF-8 text.
var binaryFormats = map[Format]bool{PDF: true, DOCX: true, PPTX: true, XLSX: true, EPUB: true, RTF: true}

var byContentType = map[string]Format{
	"text/plain":            Text,
	"text/markdown":         Markdown,
	"text/x-markdown":       Markdown,
	"text/html":             HTML,
	"application/xhtml+xml": HTML,
	"application/json":      JSON,
	"text/json":             JSON,
	"text/csv":              CSV,
	"application/csv":       CSV,
	"application/pdf":       PDF,
	"application/x-pdf":     PDF,
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   DOCX,
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": PPTX,
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         XLSX,
	"application/epub+zip": EPUB,
	"application/rtf":      RTF,
	"application/x-rtf":    RTF,
	"text/rtf":             RTF,
}

var byExtension = map[string]Format{
	".txt":      Text,
	".text":     Text,
	".md":       Markdown,
	".markdown": Markdown,
	".html":     HTML,
	".htm":      HTML,
	".xhtml":    HTML,
	".json":     JSON,
	".csv":      CSV,
	".pdf":      PDF,
	".docx":     DOCX,
	".pptx":     PPTX,
	".xlsx":     XLSX,
	".epub":     EPUB,
	".rtf":      RTF,
}

// Detect returns the format of a document from its content type (checked
// first; parameters such as charset are ignored; "application/octet-stream"
// and an empty type fall through) and then its file name's extension. An
// unsupported document is an error of kind Invalid.
func Detect(filename, contentType string) (Format, error) {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			mt, _, _ = strings.Cut(contentType, ";")
		}
		mt = strings.ToLower(strings.TrimSpace(mt))
		if f, ok := byContentType[mt]; ok {
			return f, nil
		}
		if strings.HasSuffix(mt, "+json") {
			return JSON, nil
		}
	}
	if f, ok := byExtension[strings.ToLower(path.Ext(filename))]; ok {
		return f, nil
	}
	return "", apiary.E(apiary.KindInvalid,
		"unsupported content type %q (file %q): supported are %s", contentType, filename, supportedList)
}

// supportedList names the supported formats by extension, for errors.
const supportedList = ".txt .md .html .json .csv .pdf .docx .pptx .xlsx .epub .rtf"

// DetectData is Detect that, when the content type and the file name say
// nothing known, recognises the format from the document's first bytes
// (Sniff).
func DetectData(filename, contentType string, raw []byte) (Format, error) {
	f, err := Detect(filename, contentType)
	if err != nil {
		if sniffed, ok := Sniff(raw); ok {
			return sniffed, nil
		}
	}
	return f, err
}

// Sniff recognises PDF, RTF and the zip-based formats (DOCX, PPTX, XLSX,
// EPUB) from their bytes: "%PDF-", "{\\rtf", and for a zip the EPUB
// mimetype entry or the OOXML main part's name.
func Sniff(raw []byte) (Format, bool) {
	head := raw[:min(len(raw), 1024)]
	switch {
	case bytes.HasPrefix(head, []byte("%PDF-")):
		return PDF, true
	case bytes.HasPrefix(bytes.TrimLeft(head, " \t\r\n"), []byte("{\\rtf")):
		return RTF, true
	case bytes.HasPrefix(head, []byte("PK\x03\x04")):
		return sniffZip(raw)
	}
	return "", false
}

// Bounds on what Extract writes.
const (
	// TextRatio and TextSlack bound the text of a file of n bytes to
	// TextRatio×n + TextSlack bytes. Prose never grows (HTML and Markdown
	// shrink); a CSV of short cells under long column names legitimately
	// runs to several times its size, a bomb to thousands of times.
	TextRatio = 8
	TextSlack = 64 << 10
	// MaxLabelBytes is the longest CSV column name or JSON key path written
	// before a value; longer ones are cut, marked with "…".
	MaxLabelBytes = 128
	// InflateRatio and InflateSlack bound the bytes that a compressed
	// document (PDF streams, the parts of a zip) may decode to, all its
	// parts together: InflateRatio × the file + InflateSlack. Every decode
	// counts: a PDF form drawn twice counts twice. Text-heavy PDFs decode
	// to 3 to 10 times their size and DOCX parts to 5 to 50; a flate bomb
	// decodes to 1,000 times.
	InflateRatio = 64
	InflateSlack = 64 << 20
	// MaxTitleBytes is the longest title Extract returns.
	MaxTitleBytes = apiary.MaxTitleBytes
)

// MaxText is the most text, in bytes, that Extract writes for a file of
// rawLen bytes under a document limit of limit bytes (0: no limit).
func MaxText(rawLen, limit int) int {
	n := TextRatio*rawLen + TextSlack
	if limit > 0 {
		n = min(n, limit)
	}
	return n
}

// Document is an extracted document.
type Document struct {
	// Text is the document's text: valid UTF-8, never longer than MaxText.
	Text string
	// Title is the document's own title ("" when it has none), at most
	// MaxTitleBytes.
	Title string
	// Pages holds, for formats made of pages (PDF pages, PPTX slides),
	// the byte offset in Text where each page starts: page n (from 1)
	// starts at Pages[n-1] and ends where the next starts. An empty page
	// starts where the next does. Nil for other formats.
	Pages []int
}

// Extract returns the text and the title (empty when the document has none)
// of raw in format f. limit is the document limit (0: none): the text is
// never longer than MaxText(len(raw), limit), and a document whose text
// would be is an error of kind TooLarge.
func Extract(f Format, raw []byte, limit int) (text string, title string, err error) {
	d, err := ExtractDocument(context.Background(), f, raw, limit)
	return d.Text, d.Title, err
}

// ExtractDocument is Extract with page boundaries. Formats that can take
// long (PDF) stop when ctx is done, with an error of kind Unavailable.
func ExtractDocument(ctx context.Context, f Format, raw []byte, limit int) (Document, error) {
	if !binaryFormats[f] && !utf8.Valid(raw) {
		return Document{}, apiary.E(apiary.KindInvalid, "extract %s: document is not valid UTF-8", f)
	}
	w := &writer{max: MaxText(len(raw), limit)}
	var (
		d   Document
		err error
	)
	if !binaryFormats[f] {
		raw = bytes.TrimPrefix(raw, []byte("\uFEFF"))
	}
	switch f {
	case Text:
		d.Text = normalize(string(raw))
	case Markdown:
		d.Text, d.Title = extractMarkdown(string(raw))
	case HTML:
		d.Text, d.Title, err = extractHTML(raw, w)
	case JSON:
		d.Text, d.Title, err = extractJSON(raw, w)
	case CSV:
		d.Text, err = extractCSV(raw, w)
	case PDF:
		d.Text, d.Title, d.Pages, err = extractPDF(ctx, raw, w)
	case DOCX:
		d.Text, d.Title, err = extractDOCX(raw, w)
	case PPTX:
		d.Text, d.Title, d.Pages, err = extractPPTX(raw, w)
	case XLSX:
		d.Text, d.Title, err = extractXLSX(raw, w)
	case EPUB:
		d.Text, d.Title, err = extractEPUB(raw, w)
	case RTF:
		d.Text, d.Title, err = extractRTF(raw, w)
	default:
		return Document{}, apiary.E(apiary.KindInvalid, "extract: unsupported format %q", string(f))
	}
	if err == nil && (w.full || len(d.Text) > w.max) {
		err = tooLarge(f, len(raw), limit, w.max)
	}
	if err != nil {
		return Document{}, err
	}
	d.Title = apiary.Truncate(d.Title, MaxTitleBytes)
	return d, nil
}

func tooLarge(f Format, rawLen, limit, max int) error {
	if limit > 0 && max == limit {
		return apiary.E(apiary.KindTooLarge, "extract %s: the text would pass the document limit of %d bytes", f, limit)
	}
	return apiary.E(apiary.KindTooLarge, "extract %s: the text would pass %d bytes (%d times the %d-byte file plus %d)",
		f, max, TextRatio, rawLen, TextSlack)
}

// writer collects text up to max bytes. A write that would pass max is
// dropped and marks the writer full; extractors stop at the next check.
type writer struct {
	buf  []byte
	max  int
	full bool
}

func (w *writer) room(n int) bool {
	if w.full || len(w.buf)+n > w.max {
		w.full = true
		return false
	}
	return true
}

func (w *writer) write(s string) {
	if w.room(len(s)) {
		w.buf = append(w.buf, s...)
	}
}

func (w *writer) writeByte(c byte) {
	if w.room(1) {
		w.buf = append(w.buf, c)
	}
}

// String is the text written so far without trailing line breaks.
func (w *writer) String() string { return strings.TrimRight(string(w.buf), "\n") }

// label returns s to be written before a value: whole when it fits in
// MaxLabelBytes, otherwise its first bytes (keepEnd false) or its last
// (keepEnd true), marked with "…".
func label(s string, keepEnd bool) string {
	if len(s) <= MaxLabelBytes {
		return s
	}
	const mark = "…"
	n := MaxLabelBytes - len(mark)
	if !keepEnd {
		return apiary.Truncate(s, n) + mark
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return mark + s[i:]
}

// normalize turns CRLF and CR into LF, drops NUL bytes and trims trailing
// spaces on each line and blank lines at both ends. It makes one pass over
// s, whatever its number of lines.
func normalize(s string) string {
	b := make([]byte, 0, len(s))
	lineStart := 0 // where the current line starts in b
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			c = '\n'
		case 0:
			continue
		}
		if c != '\n' {
			b = append(b, c)
			continue
		}
		b = trimLineEnd(b, lineStart)
		if len(b) > 0 { // blank lines at the start are dropped
			b = append(b, '\n')
		}
		lineStart = len(b)
	}
	b = trimLineEnd(b, lineStart)
	return string(bytes.TrimRight(b, "\n"))
}

// trimLineEnd drops the spaces and tabs (and \f, \v) that end b after from.
func trimLineEnd(b []byte, from int) []byte {
	return b[:from+len(bytes.TrimRight(b[from:], " \t\f\v"))]
}

// extractMarkdown keeps the text as written (headings, lists and code stay
// lines of their own); the title is the first ATX "# " heading.
func extractMarkdown(s string) (string, string) {
	text := normalize(s)
	title := ""
	inFence := false
	for line := range strings.SplitSeq(text, "\n") {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "```") || strings.HasPrefix(trim, "~~~") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if rest, ok := strings.CutPrefix(trim, "# "); ok {
			title = strings.TrimSpace(strings.TrimRight(strings.TrimSpace(rest), "#"))
			if title != "" {
				break
			}
		}
	}
	return text, title
}

// blockAtoms are the elements that start a new line in the text.
var blockAtoms = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true,
	atom.Br: true, atom.Dd: true, atom.Div: true, atom.Dl: true, atom.Dt: true,
	atom.Fieldset: true, atom.Figcaption: true, atom.Figure: true, atom.Footer: true,
	atom.Form: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true,
	atom.H5: true, atom.H6: true, atom.Header: true, atom.Hr: true, atom.Li: true,
	atom.Main: true, atom.Nav: true, atom.Ol: true, atom.P: true, atom.Pre: true,
	atom.Section: true, atom.Table: true, atom.Tr: true, atom.Ul: true,
	atom.Caption: true, atom.Details: true, atom.Summary: true, atom.Body: true,
}

// paragraphAtoms are block elements that end with a blank line.
var paragraphAtoms = map[atom.Atom]bool{
	atom.P: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true,
	atom.H5: true, atom.H6: true, atom.Blockquote: true, atom.Pre: true,
	atom.Table: true, atom.Ul: true, atom.Ol: true, atom.Section: true, atom.Article: true,
}

// skipAtoms are elements whose content is never text.
var skipAtoms = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true,
	atom.Svg: true, atom.Math: true, atom.Iframe: true, atom.Object: true,
}

// extractHTML streams the document's tokens (no tree is built, so memory
// follows the file, however deep its nesting): text of script, style and the
// like is dropped, block elements become line breaks (paragraphs, headings,
// lists and tables blank lines), table cells are separated by " | ", and
// runs of white space inside text collapse as a browser would (except in
// <pre>). The title is the first <title>'s text.
func extractHTML(raw []byte, out *writer) (string, string, error) {
	z := html.NewTokenizer(bytes.NewReader(raw))
	w := &htmlWriter{writer: out}
	var (
		skip     int  // open elements whose content is never text
		pre      int  // open <pre> elements
		preStart bool // a line break right after <pre> is not text
		openP    bool // a <p> is open: the next block closes it, as a parser would
		inTitle  bool
		title    strings.Builder
	)
	for !w.full {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); !errors.Is(err, io.EOF) {
				return "", "", apiary.Wrap(err, apiary.KindInvalid, "extract html: read")
			}
			return collapseBlankLines(normalize(string(w.buf))), w.title, nil
		case html.TextToken:
			switch {
			case inTitle:
				if title.Len() <= MaxTitleBytes {
					title.Write(z.Text())
				}
			case skip == 0:
				text := string(z.Text())
				if preStart {
					text = strings.TrimPrefix(text, "\n")
				}
				w.text(text, pre > 0)
			}
			preStart = false
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			a := atom.Lookup(name)
			preStart = false
			if tt == html.EndTagToken {
				switch {
				case a == atom.Title && inTitle:
					inTitle = false
					if w.title == "" {
						w.title = apiary.Truncate(strings.Join(strings.Fields(title.String()), " "), MaxTitleBytes)
					}
				case skipAtoms[a]:
					skip = max(skip-1, 0)
				case skip > 0:
				case a == atom.Pre:
					pre = max(pre-1, 0)
					w.breakLine(2)
				case paragraphAtoms[a], openP && blockAtoms[a] && a != atom.Br:
					w.breakLine(2)
					openP = false
				case blockAtoms[a]:
					w.breakLine(1)
				}
				continue
			}
			switch {
			case a == atom.Title:
				inTitle = tt == html.StartTagToken // a later title's text is neither title nor text
				title.Reset()
			case skipAtoms[a]:
				if tt == html.StartTagToken {
					skip++
				}
			case skip > 0:
			case a == atom.Td, a == atom.Th:
				if !w.atLineStart() {
					w.buf = bytes.TrimRight(w.buf, " \t")
					w.write(" | ")
					w.space = false
				}
			case a == atom.Img:
				w.text(" "+altText(z, hasAttr)+" ", false)
			case blockAtoms[a]:
				if openP && a != atom.Br {
					w.breakLine(2)
					openP = false
				}
				w.breakLine(1)
				openP = openP || a == atom.P && tt == html.StartTagToken
				if a == atom.Pre && tt == html.StartTagToken {
					pre++
					preStart = true
				}
			}
		}
	}
	return "", "", nil // full: the caller reports the bound
}

// altText returns the alt attribute of the tag z is at.
func altText(z *html.Tokenizer, more bool) string {
	for more {
		var key, val []byte
		key, val, more = z.TagAttr()
		if string(key) == "alt" {
			return string(val)
		}
	}
	return ""
}

type htmlWriter struct {
	*writer
	space bool // a space is due before the next word
	title string
}

func (w *htmlWriter) atLineStart() bool { return len(w.buf) == 0 || w.buf[len(w.buf)-1] == '\n' }

// breakLine ends the current line and makes sure n line breaks end the text.
func (w *htmlWriter) breakLine(n int) {
	w.space = false
	w.buf = bytes.TrimRight(w.buf, " \t")
	if len(w.buf) == 0 {
		return
	}
	have := len(w.buf) - len(bytes.TrimRight(w.buf, "\n"))
	for ; have < n; have++ {
		w.writeByte('\n')
	}
}

func (w *htmlWriter) text(s string, pre bool) {
	if pre {
		w.write(s)
		w.space = false
		return
	}
	if s != "" && startsWithSpace(s) {
		w.space = true
	}
	for _, word := range strings.Fields(s) {
		if w.space && !w.atLineStart() {
			w.writeByte(' ')
		}
		w.write(word)
		w.space = true
	}
	if s != "" {
		w.space = endsWithSpace(s)
	}
}

func startsWithSpace(s string) bool { return strings.TrimLeft(s, " \t\n\r\f") != s }
func endsWithSpace(s string) bool   { return strings.TrimRight(s, " \t\n\r\f") != s }

// collapseBlankLines leaves at most one blank line between lines (a line
// of white space only is blank and becomes empty) and none at either end,
// in one pass over s.
func collapseBlankLines(s string) string {
	b := make([]byte, 0, len(s))
	blank := 0
	for len(s) > 0 {
		line, rest, found := strings.Cut(s, "\n")
		s = rest
		if strings.TrimSpace(line) == "" {
			blank++
			if blank > 1 || len(b) == 0 {
				continue
			}
			b = append(b, '\n')
			continue
		}
		blank = 0
		b = append(b, line...)
		if found {
			b = append(b, '\n')
		}
	}
	return string(bytes.Trim(b, "\n"))
}

// maxJSONDepth bounds nesting so that a hostile document cannot exhaust the stack.
const maxJSONDepth = 128

// extractJSON writes one "path: value" line per string, number and boolean,
// in document order; path is dotted keys and [i] indexes ("a.b[2].c"), cut
// to its last MaxLabelBytes. A top-level "title" (or else "name") string
// becomes the title.
func extractJSON(raw []byte, out *writer) (string, string, error) {
	w := &jsonWalker{dec: json.NewDecoder(bytes.NewReader(raw)), out: out}
	w.dec.UseNumber()
	if _, err := w.value(0); err != nil {
		return "", "", jsonError(err)
	}
	if out.full {
		return "", "", nil
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return "", "", apiary.E(apiary.KindInvalid, "extract json: data after the top-level value")
	}
	title := w.top["title"]
	if title == "" {
		title = w.top["name"]
	}
	return out.String(), title, nil
}

type jsonWalker struct {
	dec  *json.Decoder
	out  *writer
	path []byte            // the current value's path; never longer than the document
	top  map[string]string // top-level string members, for the title
}

// errFull stops a walk once its writer is full.
var errFull = errors.New("extract: text bound reached")

// value writes the value at the decoder's position, whose path is w.path;
// it returns the value when it is a string.
func (w *jsonWalker) value(depth int) (string, error) {
	if depth > maxJSONDepth {
		return "", apiary.E(apiary.KindInvalid, "extract json: nested deeper than %d", maxJSONDepth)
	}
	if w.out.full {
		return "", errFull
	}
	tok, err := w.dec.Token()
	if err != nil {
		return "", err
	}
	at := len(w.path)
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			for w.dec.More() {
				kt, err := w.dec.Token()
				if err != nil {
					return "", err
				}
				key, _ := kt.(string)
				if at > 0 {
					w.path = append(w.path, '.')
				}
				w.path = append(w.path, key...)
				s, err := w.value(depth + 1)
				w.path = w.path[:at]
				if err != nil {
					return "", err
				}
				if depth == 0 && s != "" && (key == "title" || key == "name") {
					if w.top == nil {
						w.top = map[string]string{}
					}
					w.top[key] = apiary.Truncate(strings.Join(strings.Fields(s), " "), MaxTitleBytes)
				}
			}
		case '[':
			for i := 0; w.dec.More(); i++ {
				w.path = append(append(append(w.path, '['), strconv.Itoa(i)...), ']')
				_, err := w.value(depth + 1)
				w.path = w.path[:at]
				if err != nil {
					return "", err
				}
			}
		}
		_, err := w.dec.Token() // the closing delimiter
		return "", err
	case string:
		w.line(v)
		return v, nil
	case json.Number:
		w.line(v.String())
	case bool:
		w.line(strconv.FormatBool(v))
	}
	return "", nil // null carries no text
}

// line writes "path: value" with the value's line breaks folded into
// spaces so that each value stays one line.
func (w *jsonWalker) line(value string) {
	value = strings.Join(strings.Fields(value), " ")
	if value == "" {
		return
	}
	if len(w.path) > 0 {
		// Only the path's tail can be written: copy no more of it than
		// label keeps (a whole long path per leaf is quadratic).
		p := w.path
		if len(p) > MaxLabelBytes {
			p = p[len(p)-MaxLabelBytes-utf8.UTFMax:]
			w.out.write(label(string(p), true))
		} else {
			w.out.write(string(p))
		}
		w.out.write(": ")
	}
	w.out.write(value)
	w.out.writeByte('\n')
}

// jsonError classifies a decoding error without echoing document text
// (encoding/json's syntax errors may quote a character of the input).
func jsonError(err error) error {
	if errors.Is(err, errFull) {
		return nil // the caller reports the bound
	}
	if apiary.KindOf(err) != apiary.KindOther {
		return err
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return apiary.E(apiary.KindInvalid, "extract json: syntax error at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return apiary.E(apiary.KindInvalid, "extract json: unexpected end of document")
	}
	return apiary.E(apiary.KindInvalid, "extract json: not a valid JSON document")
}

// maxCSVColumns bounds the header names kept to label cells: a header of
// millions of columns would otherwise cost far more memory than its text.
// Cells past it are named by position, as cells past the header are.
const maxCSVColumns = 4096

// extractCSV writes the CSV as a table (see table). Cells are read one at
// a time (csvScanner), never a whole record: a record of millions of empty
// cells costs no memory.
func extractCSV(raw []byte, w *writer) (string, error) {
	sc := &csvScanner{rest: raw}
	t := &table{w: w}
	for !w.full && sc.nextRecord() {
		for i := 0; !w.full; i++ {
			v, last := sc.field()
			t.cell(i, v)
			if last {
				break
			}
		}
		t.endRow()
	}
	return w.String(), nil
}

// table writes rows of cells as text: the first row (the header) as a
// line of its cells joined by "; ", then each row as "col: value; col:
// value" (empty cells left out), each column name cut to MaxLabelBytes.
// Cells past the header are named by position ("column 5"), as are cells
// under an empty name; at most maxCSVColumns names are kept. CSV files and
// spreadsheet sheets are tables.
type table struct {
	w      *writer
	header []string // nil until the header row ends
	row    []string // the header row's names so far
	cells  int      // cells written in the current row
	next   int      // the next header column (header cells may skip columns)
}

// cell writes the cell of column i (from 0) of the current row. Cells of
// a row come in column order.
func (t *table) cell(i int, v string) {
	if v = strings.TrimSpace(v); v != "" {
		v = strings.Join(strings.Fields(v), " ")
	}
	if t.header == nil {
		for ; t.next <= i; t.next++ {
			if t.next > 0 {
				t.w.write("; ")
			}
			h := ""
			if t.next == i {
				h = v
			}
			t.w.write(h)
			if len(t.row) < maxCSVColumns {
				t.row = append(t.row, label(h, false))
			}
		}
		return
	}
	if v == "" {
		return
	}
	name := ""
	if i < len(t.header) {
		name = t.header[i]
	}
	if name == "" {
		name = "column " + strconv.Itoa(i+1)
	}
	if t.cells > 0 {
		t.w.write("; ")
	}
	t.w.write(name)
	t.w.write(": ")
	t.w.write(v)
	t.cells++
}

// endRow ends the current row.
func (t *table) endRow() {
	switch {
	case t.header == nil:
		if t.next == 0 {
			return // no cell yet: the header is still to come
		}
		t.header = t.row
		if t.header == nil {
			t.header = []string{}
		}
		t.w.writeByte('\n')
	case t.cells > 0:
		t.w.writeByte('\n')
	}
	t.cells = 0
}

// csvScanner reads CSV one field at a time as encoding/csv reads it with
// LazyQuotes and any number of fields per record: records end at LF or
// CRLF, empty lines are skipped, a field starting with a quote is quoted
// ("" is a quote, a quote not before a comma or the end of the line is
// kept, line breaks are kept, the end of the input ends it), and a trailing
// CR before the end of the input is dropped.
type csvScanner struct {
	rest []byte // the input after line
	line []byte // the rest of the current line, without its line break
	nl   bool   // line ended with a line break
	buf  []byte // a quoted field's text
}

// readLine moves to the next physical line; false at the end of the input.
func (s *csvScanner) readLine() bool {
	if len(s.rest) == 0 {
		s.line, s.nl = nil, false
		return false
	}
	i := bytes.IndexByte(s.rest, '\n')
	if i < 0 {
		s.line, s.nl, s.rest = bytes.TrimSuffix(s.rest, []byte("\r")), false, nil
		return true
	}
	s.line, s.nl, s.rest = bytes.TrimSuffix(s.rest[:i], []byte("\r")), true, s.rest[i+1:]
	return true
}

// nextRecord moves to the start of the next record, skipping empty lines;
// false at the end of the input.
func (s *csvScanner) nextRecord() bool {
	for s.readLine() {
		if len(s.line) > 0 {
			return true
		}
	}
	return false
}

// field returns the record's next field and whether it is the record's last.
func (s *csvScanner) field() (string, bool) {
	if len(s.line) == 0 || s.line[0] != '"' {
		i := bytes.IndexByte(s.line, ',')
		if i < 0 {
			f := string(s.line)
			s.line = nil
			return f, true
		}
		f := string(s.line[:i])
		s.line = s.line[i+1:]
		return f, false
	}
	s.line = s.line[1:]
	s.buf = s.buf[:0]
	for {
		if i := bytes.IndexByte(s.line, '"'); i >= 0 {
			s.buf = append(s.buf, s.line[:i]...)
			s.line = s.line[i+1:]
			switch {
			case len(s.line) > 0 && s.line[0] == '"':
				s.buf = append(s.buf, '"')
				s.line = s.line[1:]
			case len(s.line) > 0 && s.line[0] == ',':
				s.line = s.line[1:]
				return string(s.buf), false
			case len(s.line) == 0:
				return string(s.buf), true
			default: // a bare quote
				s.buf = append(s.buf, '"')
			}
			continue
		}
		if len(s.line) == 0 && !s.nl {
			return string(s.buf), true // the end of the input
		}
		s.buf = append(s.buf, s.line...)
		if s.nl {
			s.buf = append(s.buf, '\n')
		}
		if !s.readLine() {
			return string(s.buf), true
		}
	}
}
