package extract

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"encoding/xml"
	"errors"
	"io"
	"path"
	"strings"

	"github.com/apiaryhq/apiary"
)

// DOCX, PPTX, XLSX and EPUB are zip archives of XML. An archive is opened
// only after its end record shows at most MaxZipEntries entries; only the
// parts a format needs are read, each refused when it declares more than
// MaxZipRatio times its compressed size (plus zipRatioSlack) and cut off
// when it inflates past what it declared; every part read counts against
// one budget per document, InflateRatio times the file plus InflateSlack.
// XML is read token by token (no tree), nested at most maxXMLDepth deep;
// encoding/xml expands no entities but the predefined ones.

const (
	// MaxZipEntries is the most entries an archive may hold.
	MaxZipEntries = 10000
	// MaxZipRatio is the most a part may inflate, as a multiple of its
	// compressed size (past zipRatioSlack). XML compresses 5 to 50 times;
	// a zip bomb inflates a thousand times.
	MaxZipRatio   = 250
	zipRatioSlack = 1 << 20
	// maxXMLDepth bounds the nesting of XML elements.
	maxXMLDepth = 256
)

var (
	errZipBudget = errors.New("archive inflates too far")
	errXMLDepth  = errors.New("XML nested too deep")
)

// zipDoc is an opened archive.
type zipDoc struct {
	format Format
	files  map[string]*zip.File
	budget int64 // bytes that may still be inflated
}

func openZip(f Format, raw []byte) (*zipDoc, error) {
	n, ok := zipEntryCount(raw)
	if !ok {
		return nil, apiary.E(apiary.KindInvalid, "extract %s: not a zip archive", f)
	}
	if n > MaxZipEntries {
		return nil, apiary.E(apiary.KindTooLarge, "extract %s: the archive holds more than %d entries", f, MaxZipEntries)
	}
	r, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return nil, apiary.E(apiary.KindInvalid, "extract %s: not a readable zip archive", f)
	}
	if len(r.File) > MaxZipEntries {
		return nil, apiary.E(apiary.KindTooLarge, "extract %s: the archive holds more than %d entries", f, MaxZipEntries)
	}
	z := &zipDoc{format: f, files: make(map[string]*zip.File, len(r.File)), budget: InflateRatio*int64(len(raw)) + InflateSlack}
	for _, zf := range r.File {
		if _, dup := z.files[zf.Name]; !dup {
			z.files[zf.Name] = zf
		}
	}
	return z, nil
}

// zipEntryCount reads the entry count from the end of central directory
// record (a ZIP64 archive's count is 0xFFFF there: more than allowed).
func zipEntryCount(raw []byte) (int, bool) {
	tail := raw[max(0, len(raw)-(1<<16+22)):]
	i := bytes.LastIndex(tail, []byte("PK\x05\x06"))
	if i < 0 || i+22 > len(tail) {
		return 0, false
	}
	return int(binary.LittleEndian.Uint16(tail[i+10:])), true
}

// has reports whether the archive holds name.
func (z *zipDoc) has(name string) bool { _, ok := z.files[name]; return ok }

// open returns a reader of the part name, or an error of kind Invalid
// when it is missing, TooLarge when it is a bomb.
func (z *zipDoc) open(name string) (io.ReadCloser, error) {
	zf, ok := z.files[name]
	if !ok {
		return nil, apiary.E(apiary.KindInvalid, "extract %s: a part the format needs is missing", z.format)
	}
	if zf.UncompressedSize64 > MaxZipRatio*zf.CompressedSize64+zipRatioSlack {
		return nil, apiary.E(apiary.KindTooLarge, "extract %s: a part would inflate more than %d times", z.format, MaxZipRatio)
	}
	if zf.UncompressedSize64 > uint64(max(z.budget, 0)) {
		return nil, z.budgetError()
	}
	// Read raw and inflate here: archive/zip's own check of the declared
	// size would tell a bomb from damage no better than "not valid".
	raw, err := zf.OpenRaw()
	if err != nil {
		return nil, apiary.E(apiary.KindInvalid, "extract %s: a part of the archive does not open", z.format)
	}
	var rc io.ReadCloser
	switch zf.Method {
	case zip.Store:
		rc = io.NopCloser(raw)
	case zip.Deflate:
		rc = flate.NewReader(raw)
	default:
		return nil, apiary.E(apiary.KindInvalid, "extract %s: a part of the archive is compressed by an unsupported method", z.format)
	}
	return &zipPart{rc: rc, z: z, left: int64(zf.UncompressedSize64)}, nil
}

func (z *zipDoc) budgetError() error {
	return apiary.E(apiary.KindTooLarge, "extract %s: the archive inflates to more than %d times the file plus %d bytes", z.format, InflateRatio, InflateSlack)
}

// read returns the whole part name.
func (z *zipDoc) read(name string) ([]byte, error) {
	rc, err := z.open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, z.partError(err)
	}
	return b, nil
}

func (z *zipDoc) partError(err error) error {
	switch {
	case errors.Is(err, errZipBudget):
		return z.budgetError()
	case errors.Is(err, errXMLDepth):
		return apiary.E(apiary.KindInvalid, "extract %s: XML nested deeper than %d", z.format, maxXMLDepth)
	case apiary.KindOf(err) != apiary.KindOther:
		return err
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return apiary.E(apiary.KindInvalid, "extract %s: malformed XML at line %d", z.format, se.Line)
	}
	return apiary.E(apiary.KindInvalid, "extract %s: a part of the archive does not read", z.format)
}

// zipPart reads a part, no further than it declared nor than the budget.
type zipPart struct {
	rc   io.ReadCloser
	z    *zipDoc
	left int64 // bytes declared and not yet read
}

func (p *zipPart) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	p.left -= int64(n)
	p.z.budget -= int64(n)
	if p.left < 0 || p.z.budget < 0 {
		return n, errZipBudget
	}
	return n, err
}

func (p *zipPart) Close() error { return p.rc.Close() }

// xmlReader streams a part's XML elements with their depth.
type xmlReader struct {
	d     *xml.Decoder
	depth int
}

func newXMLReader(r io.Reader) *xmlReader {
	d := xml.NewDecoder(r)
	d.CharsetReader = func(_ string, in io.Reader) (io.Reader, error) { return in, nil }
	return &xmlReader{d: d}
}

// next returns the next token (StartElement, EndElement or CharData);
// io.EOF at the end.
func (x *xmlReader) next() (xml.Token, error) {
	for {
		tok, err := x.d.Token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if x.depth++; x.depth > maxXMLDepth {
				return nil, errXMLDepth
			}
			return t, nil
		case xml.EndElement:
			x.depth--
			return t, nil
		case xml.CharData:
			return t, nil
		}
	}
}

// skip reads past the end of the element just started.
func (x *xmlReader) skip() error {
	for depth := 1; depth > 0; {
		tok, err := x.next()
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			depth--
		}
	}
	return nil
}

func attr(e xml.StartElement, local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// walkXML reads part name, calling fn for each token until it returns
// false or the part ends.
func (z *zipDoc) walkXML(name string, fn func(x *xmlReader, tok xml.Token) (bool, error)) error {
	rc, err := z.open(name)
	if err != nil {
		return err
	}
	defer rc.Close()
	x := newXMLReader(rc)
	for {
		tok, err := x.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return z.partError(err)
		}
		more, err := fn(x, tok)
		if err != nil {
			return z.partError(err)
		}
		if !more {
			return nil
		}
	}
}

// rels reads the relationships of part (its _rels/NAME.rels): id → the
// target's name in the archive, and the targets by type suffix.
func (z *zipDoc) rels(part string) (map[string]string, map[string][]string, error) {
	dir, file := path.Split(part)
	name := dir + "_rels/" + file + ".rels"
	ids, byType := map[string]string{}, map[string][]string{}
	if !z.has(name) {
		return ids, byType, nil
	}
	err := z.walkXML(name, func(_ *xmlReader, tok xml.Token) (bool, error) {
		if e, ok := tok.(xml.StartElement); ok && e.Name.Local == "Relationship" && attr(e, "TargetMode") != "External" {
			target := resolvePart(dir, attr(e, "Target"))
			ids[attr(e, "Id")] = target
			typ := attr(e, "Type")
			typ = typ[strings.LastIndexByte(typ, '/')+1:]
			byType[typ] = append(byType[typ], target)
		}
		return true, nil
	})
	return ids, byType, err
}

// resolvePart resolves a relative reference against a directory inside
// the archive ("/" starts at the archive's root); %-escapes are undone.
func resolvePart(dir, ref string) string {
	ref, _, _ = strings.Cut(ref, "#")
	if u, err := urlUnescape(ref); err == nil {
		ref = u
	}
	if strings.HasPrefix(ref, "/") {
		return strings.TrimPrefix(path.Clean(ref), "/")
	}
	return strings.TrimPrefix(path.Clean("/"+dir+ref), "/")
}

func urlUnescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, ok := unhex2(s[i+1], s[i+2]); ok {
				b.WriteByte(v)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

// coreTitle returns docProps/core.xml's dc:title, "" when there is none.
func (z *zipDoc) coreTitle() string {
	if !z.has("docProps/core.xml") {
		return ""
	}
	var title strings.Builder
	in := false
	_ = z.walkXML("docProps/core.xml", func(_ *xmlReader, tok xml.Token) (bool, error) {
		switch t := tok.(type) {
		case xml.StartElement:
			in = t.Name.Local == "title"
		case xml.EndElement:
			if in {
				return false, nil
			}
		case xml.CharData:
			if in && title.Len() < MaxTitleBytes {
				title.Write(t)
			}
		}
		return true, nil
	})
	return strings.Join(strings.Fields(title.String()), " ")
}

// sniffZip tells the zip-based formats apart by their main part.
func sniffZip(raw []byte) (Format, bool) {
	if n, ok := zipEntryCount(raw); !ok || n > MaxZipEntries {
		return "", false
	}
	r, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return "", false
	}
	for _, f := range r.File {
		switch f.Name {
		case "word/document.xml":
			return DOCX, true
		case "ppt/presentation.xml":
			return PPTX, true
		case "xl/workbook.xml":
			return XLSX, true
		case "META-INF/container.xml":
			return EPUB, true
		}
	}
	return "", false
}
