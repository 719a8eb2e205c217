package extract

import (
	"encoding/xml"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apiaryhq/apiary"
)

// DOCX: word/document.xml in document order (paragraphs, headings, tables
// as tables), then footnotes and endnotes. Deleted text of tracked changes,
// field codes and the fallback copies of alternate content are left out.
// The title is the document property, else the first paragraph styled
// Title or Heading 1.
func extractDOCX(raw []byte, w *writer) (string, string, error) {
	z, err := openZip(DOCX, raw)
	if err != nil {
		return "", "", err
	}
	_, byType, err := z.rels("word/document.xml")
	if err != nil {
		return "", "", err
	}
	main := "word/document.xml"
	if docs := byType["officeDocument"]; len(docs) > 0 && z.has(docs[0]) {
		main = docs[0]
	}
	d := &docxWriter{w: w}
	parts := []string{main}
	parts = append(parts, byType["footnotes"]...)
	parts = append(parts, byType["endnotes"]...)
	for i, part := range parts {
		if i > 0 && !z.has(part) {
			continue
		}
		if err := z.walkXML(part, d.token); err != nil {
			return "", "", err
		}
		if w.full {
			return "", "", nil
		}
	}
	title := z.coreTitle()
	if title == "" {
		title = d.title
	}
	return collapseBlankLines(w.String()), title, nil
}

// docxWriter turns WordprocessingML tokens into text.
type docxWriter struct {
	w       *writer
	inText  bool   // inside w:t
	tables  int    // open w:tbl
	tbl     *table // the outermost open table
	col     int    // the current cell's column
	cell    []byte // the current cell's text
	style   string // the current paragraph's style
	pStart  int    // where the current paragraph starts in w
	title   string
	written bool // text written since the last paragraph break
}

func (d *docxWriter) text(s string) {
	if d.tables > 0 {
		if len(d.cell)+len(s) > d.w.max {
			d.w.full = true
			return
		}
		d.cell = append(d.cell, s...)
		return
	}
	d.w.write(s)
	d.written = true
}

func (d *docxWriter) token(x *xmlReader, tok xml.Token) (bool, error) {
	switch t := tok.(type) {
	case xml.StartElement:
		switch t.Name.Local {
		case "t":
			d.inText = true
		case "tab", "ptab":
			d.text("\t")
		case "br", "cr":
			if d.tables > 0 {
				d.text(" ")
			} else {
				d.text("\n")
			}
		case "noBreakHyphen":
			d.text("-")
		case "Fallback", "delText", "instrText", "del", "rPr":
			return true, x.skip()
		case "pStyle":
			d.style = attr(t, "val")
		case "p":
			d.style = ""
			d.pStart = len(d.w.buf)
		case "tbl":
			if d.tables++; d.tables == 1 {
				d.paragraph()
				d.tbl = &table{w: d.w}
			}
		case "tr":
			if d.tables == 1 {
				d.col = 0
			}
		case "tc":
			if d.tables == 1 {
				d.cell = d.cell[:0]
			}
		}
	case xml.EndElement:
		switch t.Name.Local {
		case "t":
			d.inText = false
		case "p":
			if d.tables > 0 {
				d.text(" ")
				return true, nil
			}
			if d.title == "" && (d.style == "Title" || d.style == "Heading1") {
				d.title = strings.Join(strings.Fields(string(d.w.buf[d.pStart:])), " ")
			}
			d.paragraph()
		case "tc":
			if d.tables == 1 {
				d.tbl.cell(d.col, string(d.cell))
				d.col++
			}
		case "tr":
			if d.tables == 1 {
				d.tbl.endRow()
			}
		case "tbl":
			if d.tables--; d.tables == 0 {
				d.w.write("\n")
				d.written = true
				d.paragraph()
			}
		}
	case xml.CharData:
		if d.inText {
			d.text(string(t))
		}
	}
	return !d.w.full, nil
}

// paragraph ends a paragraph with a blank line.
func (d *docxWriter) paragraph() {
	if d.written {
		d.w.write("\n\n")
		d.written = false
	}
}

// PPTX: the slides in presentation order, each a page, each followed by
// its speaker notes. Paragraphs are lines; table cells are joined by " | ".
func extractPPTX(raw []byte, w *writer) (string, string, []int, error) {
	z, err := openZip(PPTX, raw)
	if err != nil {
		return "", "", nil, err
	}
	ids, _, err := z.rels("ppt/presentation.xml")
	if err != nil {
		return "", "", nil, err
	}
	var slides []string
	err = z.walkXML("ppt/presentation.xml", func(_ *xmlReader, tok xml.Token) (bool, error) {
		if e, ok := tok.(xml.StartElement); ok && e.Name.Local == "sldId" {
			if target, ok := ids[relID(e)]; ok && z.has(target) && len(slides) < MaxZipEntries {
				slides = append(slides, target)
			}
		}
		return true, nil
	})
	if err != nil {
		return "", "", nil, err
	}
	var pages []int
	for _, slide := range slides {
		trimTrailingSpace(w)
		if len(w.buf) > 0 {
			w.write("\n\n")
		}
		pages = append(pages, len(w.buf))
		parts := []string{slide}
		if _, byType, err := z.rels(slide); err == nil {
			parts = append(parts, byType["notesSlide"]...)
		}
		for i, part := range parts {
			if !z.has(part) {
				continue
			}
			if i > 0 {
				w.write("\n\n")
			}
			if err := z.walkXML(part, drawingText(w)); err != nil {
				return "", "", nil, err
			}
		}
		if w.full {
			return "", "", nil, nil
		}
	}
	trimTrailingSpace(w)
	for i := range pages {
		pages[i] = min(pages[i], len(w.buf))
	}
	return string(w.buf), z.coreTitle(), pages, nil
}

func relID(e xml.StartElement) string {
	for _, a := range e.Attr {
		if a.Name.Local == "id" && strings.Contains(a.Name.Space, "relationships") {
			return a.Value
		}
	}
	return attr(e, "id")
}

// drawingText writes DrawingML text (a:p paragraphs of a:t runs, a:tbl
// tables) as lines; a slide number or date placeholder's fields too.
func drawingText(w *writer) func(*xmlReader, xml.Token) (bool, error) {
	inText, cells := false, 0
	line := func() {
		if len(w.buf) > 0 && w.buf[len(w.buf)-1] != '\n' {
			w.writeByte('\n')
		}
	}
	return func(x *xmlReader, tok xml.Token) (bool, error) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "t":
				inText = true
			case "br":
				w.writeByte('\n')
			case "tr":
				cells = 0
			case "tc":
				if cells++; cells > 1 {
					w.write(" | ")
				}
			case "Fallback":
				return true, x.skip()
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "t":
				inText = false
			case "p":
				if cells == 0 {
					line()
				} else {
					w.writeByte(' ')
				}
			case "tr":
				cells = 0
				line()
			}
		case xml.CharData:
			if inText {
				w.write(string(t))
			}
		}
		return !w.full, nil
	}
}

// XLSX: each sheet in workbook order as a table (see table) under its
// name; cells hold their shared or inline strings, booleans and numbers
// as stored (dates are numbers).
func extractXLSX(raw []byte, w *writer) (string, string, error) {
	z, err := openZip(XLSX, raw)
	if err != nil {
		return "", "", err
	}
	ids, byType, err := z.rels("xl/workbook.xml")
	if err != nil {
		return "", "", err
	}
	var shared []string
	for _, part := range byType["sharedStrings"] {
		if shared, err = z.sharedStrings(part); err != nil {
			return "", "", err
		}
	}
	type sheet struct{ name, part string }
	var sheets []sheet
	err = z.walkXML("xl/workbook.xml", func(_ *xmlReader, tok xml.Token) (bool, error) {
		if e, ok := tok.(xml.StartElement); ok && e.Name.Local == "sheet" {
			if target, ok := ids[relID(e)]; ok && z.has(target) && len(sheets) < MaxZipEntries {
				sheets = append(sheets, sheet{attr(e, "name"), target})
			}
		}
		return true, nil
	})
	if err != nil {
		return "", "", err
	}
	for _, s := range sheets {
		if len(w.buf) > 0 {
			w.write("\n")
		}
		w.write(strings.Join(strings.Fields(s.name), " "))
		w.write("\n")
		if err := z.walkXML(s.part, sheetText(&table{w: w}, shared)); err != nil {
			return "", "", err
		}
		if w.full {
			return "", "", nil
		}
	}
	return w.String(), z.coreTitle(), nil
}

// sharedStrings reads the shared string table (each si's t runs, without
// phonetic runs).
func (z *zipDoc) sharedStrings(part string) ([]string, error) {
	var (
		out []string
		cur []byte
		inT bool
	)
	err := z.walkXML(part, func(x *xmlReader, tok xml.Token) (bool, error) {
		switch t := tok.(type) {
		case xml.StartElement:
			switch t.Name.Local {
			case "si":
				cur = cur[:0]
			case "t":
				inT = true
			case "rPh":
				return true, x.skip()
			}
		case xml.EndElement:
			switch t.Name.Local {
			case "si":
				out = append(out, string(cur))
			case "t":
				inT = false
			}
		case xml.CharData:
			if inT {
				cur = append(cur, t...)
			}
		}
		return true, nil
	})
	return out, err
}

// sheetText writes a worksheet's rows into t.
func sheetText(t *table, shared []string) func(*xmlReader, xml.Token) (bool, error) {
	var (
		col, next int
		typ       string
		val       []byte
		inV       bool
	)
	return func(x *xmlReader, tok xml.Token) (bool, error) {
		switch e := tok.(type) {
		case xml.StartElement:
			switch e.Name.Local {
			case "row":
				next = 0
			case "c":
				typ, val = attr(e, "t"), val[:0]
				col = next
				if c, ok := cellColumn(attr(e, "r")); ok && c >= next {
					col = c
				}
				next = col + 1
			case "v", "t":
				inV = true
			case "rPh", "f":
				return true, x.skip()
			}
		case xml.EndElement:
			switch e.Name.Local {
			case "v", "t":
				inV = false
			case "c":
				v := string(val)
				switch typ {
				case "s":
					if i, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && i >= 0 && i < len(shared) {
						v = shared[i]
					} else {
						v = ""
					}
				case "b":
					v = map[string]string{"1": "TRUE", "0": "FALSE"}[strings.TrimSpace(v)]
				}
				if strings.TrimSpace(v) != "" {
					t.cell(col, v)
				}
			case "row":
				t.endRow()
			}
		case xml.CharData:
			if inV && len(val) < t.w.max {
				val = append(val, e...)
			}
		}
		return !t.w.full, nil
	}
}

// cellColumn returns the column (from 0) of a cell reference such as "AB12".
func cellColumn(ref string) (int, bool) {
	n, i := 0, 0
	for ; i < len(ref) && i < 4; i++ {
		c := ref[i] | 0x20
		if c < 'a' || c > 'z' {
			break
		}
		n = n*26 + int(c-'a'+1)
	}
	return n - 1, i > 0
}

// EPUB: the spine's XHTML documents in reading order, each through the
// HTML extractor. The title is the package's dc:title.
func extractEPUB(raw []byte, w *writer) (string, string, error) {
	z, err := openZip(EPUB, raw)
	if err != nil {
		return "", "", err
	}
	var opf string
	err = z.walkXML("META-INF/container.xml", func(_ *xmlReader, tok xml.Token) (bool, error) {
		if e, ok := tok.(xml.StartElement); ok && e.Name.Local == "rootfile" {
			opf = resolvePart("", attr(e, "full-path"))
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return "", "", err
	}
	if !z.has(opf) {
		return "", "", apiary.E(apiary.KindInvalid, "extract epub: the package document is missing")
	}
	dir := path.Dir(opf) + "/"
	if dir == "./" {
		dir = ""
	}
	var (
		title   strings.Builder
		inTitle bool
		items   = map[string]string{} // id → part, (X)HTML only
		spine   []string
	)
	err = z.walkXML(opf, func(_ *xmlReader, tok xml.Token) (bool, error) {
		switch e := tok.(type) {
		case xml.StartElement:
			switch e.Name.Local {
			case "title":
				inTitle = title.Len() == 0
			case "item":
				if mt := attr(e, "media-type"); strings.Contains(mt, "html") && len(items) < MaxZipEntries {
					items[attr(e, "id")] = resolvePart(dir, attr(e, "href"))
				}
			case "itemref":
				if attr(e, "linear") != "no" && len(spine) < MaxZipEntries {
					spine = append(spine, attr(e, "idref"))
				}
			}
		case xml.EndElement:
			inTitle = false
		case xml.CharData:
			if inTitle && title.Len() < MaxTitleBytes {
				title.Write(e)
			}
		}
		return true, nil
	})
	if err != nil {
		return "", "", err
	}
	seen := map[string]bool{}
	for _, id := range spine {
		part, ok := items[id]
		if !ok || seen[part] || !z.has(part) {
			continue
		}
		seen[part] = true
		data, err := z.read(part)
		if err != nil {
			return "", "", err
		}
		if !utf8.Valid(data) {
			data = []byte(strings.ToValidUTF8(string(data), "\uFFFD"))
		}
		sub := &writer{max: w.max - len(w.buf)}
		text, _, err := extractHTML(data, sub)
		if err != nil {
			return "", "", err
		}
		if sub.full {
			w.full = true
			return "", "", nil
		}
		if text != "" {
			if len(w.buf) > 0 {
				w.write("\n\n")
			}
			w.write(text)
		}
	}
	return w.String(), strings.Join(strings.Fields(title.String()), " "), nil
}
