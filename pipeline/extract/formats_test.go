package extract_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"compress/zlib"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return raw
}

// TestRealDocuments extracts the documents in testdata (made by LibreOffice,
// see testdata/README.md), detected from their bytes alone.
func TestRealDocuments(t *testing.T) {
	t.Parallel()
	hive := []string{
		"Keeping Bees in Small Gardens", "A single hive fits behind most terraced houses.",
		"crème brûlée", "Langstroth", "Warré", "Swarm season", "varroa mites",
	}
	tests := []struct {
		file      string
		format    extract.Format
		want      []string
		title     string
		pageStart []string // the text each page starts with
	}{
		{"hive.pdf", extract.PDF, hive, "Keeping Bees in Small Gardens", []string{"Keeping Bees", "Swarm season"}},
		{"hive.docx", extract.DOCX, append(hive, "Hive type: Langstroth; Frames: 10; Weight (kg): 27"), "Keeping Bees in Small Gardens", nil},
		{"hive.rtf", extract.RTF, append(hive, "Langstroth | 10 | 27\n"), "Keeping Bees in Small Gardens", nil},
		{"hive.epub", extract.EPUB, hive, "Keeping Bees in Small Gardens", nil},
		{"slides.pptx", extract.PPTX, []string{"Queen rearing basics\nGraft larvae younger than one day.", "Mating nucs"}, "", []string{"Queen rearing", "Mating nucs"}},
		{"hives.xlsx", extract.XLSX, []string{"hives\nHive; Frames; Weight kg\nHive: National; Frames: 11; Weight kg: 23\n", "Hive: Warré; Frames: 8"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			raw := readTestdata(t, tt.file)
			f, err := extract.DetectData("upload", "application/octet-stream", raw)
			require.NoError(t, err)
			require.Equal(t, tt.format, f)
			d, err := extract.ExtractDocument(context.Background(), f, raw, 0)
			require.NoError(t, err)
			for _, w := range tt.want {
				require.Contains(t, d.Text, w)
			}
			require.Equal(t, tt.title, d.Title)
			require.Len(t, d.Pages, len(tt.pageStart))
			for i, start := range tt.pageStart {
				require.True(t, strings.HasPrefix(d.Text[d.Pages[i]:], start), "page %d starts %q", i+1, d.Text[d.Pages[i]:min(len(d.Text), d.Pages[i]+40)])
			}
		})
	}
}

func TestDetectNewFormats(t *testing.T) {
	t.Parallel()
	for name, want := range map[[2]string]extract.Format{
		{"a.pdf", ""}:            extract.PDF,
		{"x", "application/pdf"}: extract.PDF,
		{"a.DOCX", ""}:           extract.DOCX,
		{"x", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}:   extract.DOCX,
		{"x", "application/vnd.openxmlformats-officedocument.presentationml.presentation"}: extract.PPTX,
		{"x", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}:         extract.XLSX,
		{"b.epub", ""}:                extract.EPUB,
		{"x", "application/epub+zip"}: extract.EPUB,
		{"c.rtf", ""}:                 extract.RTF,
		{"x", "text/rtf"}:             extract.RTF,
		{"x", "application/rtf"}:      extract.RTF,
	} {
		got, err := extract.Detect(name[0], name[1])
		require.NoError(t, err, "%q", name)
		require.Equal(t, want, got, "%q", name)
	}
	_, err := extract.DetectData("noext", "", []byte("PK\x03\x04 not really a zip"))
	require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
}

// zipOf builds a zip archive of the given parts, deflated.
func zipOf(t testing.TB, parts ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for i := 0; i+1 < len(parts); i += 2 {
		w, err := zw.Create(parts[i])
		require.NoError(t, err)
		_, err = w.Write([]byte(parts[i+1]))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

const wNS = `xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"`

func docx(t testing.TB, body string) []byte {
	return zipOf(t, "word/document.xml", `<?xml version="1.0"?><w:document `+wNS+`><w:body>`+body+`</w:body></w:document>`)
}

func TestDOCXHandWritten(t *testing.T) {
	t.Parallel()
	raw := docx(t, `<w:p><w:pPr><w:pStyle w:val="Title"/></w:pPr><w:r><w:t>Field notes</w:t></w:r></w:p>`+
		`<w:p><w:r><w:t xml:space="preserve">Hello </w:t></w:r><w:del><w:r><w:delText>gone</w:delText></w:r></w:del>`+
		`<w:r><w:instrText>PAGE</w:instrText></w:r><w:r><w:t>world</w:t><w:tab/><w:t>tabbed</w:t><w:br/><w:t>next line</w:t></w:r></w:p>`+
		`<w:tbl><w:tr><w:tc><w:p><w:r><w:t>Name</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>Age</w:t></w:r></w:p></w:tc></w:tr>`+
		`<w:tr><w:tc><w:p><w:r><w:t>Ann</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>31</w:t></w:r></w:p></w:tc></w:tr></w:tbl>`+
		`<w:p><w:r><w:t>After the table.</w:t></w:r></w:p>`)
	text, title, err := extract.Extract(extract.DOCX, raw, 0)
	require.NoError(t, err)
	require.Equal(t, "Field notes\n\nHello world\ttabbed\nnext line\n\nName; Age\nName: Ann; Age: 31\n\nAfter the table.", text)
	require.Equal(t, "Field notes", title)
}

func TestXLSXHandWritten(t *testing.T) {
	t.Parallel()
	raw := zipOf(t,
		"xl/workbook.xml", `<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Second" r:id="rId2"/><sheet name="First" r:id="rId1"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels", `<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="x/worksheet"/><Relationship Id="rId2" Target="/xl/worksheets/sheet2.xml" Type="x/worksheet"/><Relationship Id="rId3" Target="sharedStrings.xml" Type="http://x/sharedStrings"/></Relationships>`,
		"xl/sharedStrings.xml", `<sst><si><t>Colony</t></si><si><r><t>Str</t></r><r><t>ength</t></r><rPh><t>skip</t></rPh></si><si><t>Alpha</t></si></sst>`,
		"xl/worksheets/sheet1.xml", `<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1" t="s"><v>1</v></c></row>`+
			`<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2"><v>7</v></c><c r="C2"><f>1+1</f><v>2</v></c></row>`+
			`<row r="3"><c r="B3" t="b"><v>1</v></c><c r="E3" t="inlineStr"><is><t>far</t></is></c></row></sheetData></worksheet>`,
		"xl/worksheets/sheet2.xml", `<worksheet><sheetData><row><c t="inlineStr"><is><t>only</t></is></c></row></sheetData></worksheet>`,
	)
	text, _, err := extract.Extract(extract.XLSX, raw, 0)
	require.NoError(t, err)
	require.Equal(t, "Second\nonly\n\nFirst\nColony; ; Strength\nColony: Alpha; column 2: 7; Strength: 2\ncolumn 2: TRUE; column 5: far", text)
}

func TestPPTXPagesAreSlides(t *testing.T) {
	t.Parallel()
	raw := readTestdata(t, "slides.pptx")
	d, err := extract.ExtractDocument(context.Background(), extract.PPTX, raw, 0)
	require.NoError(t, err)
	require.Equal(t, []int{0, strings.Index(d.Text, "Mating nucs")}, d.Pages)
}

func TestRTFHandWritten(t *testing.T) {
	t.Parallel()
	raw := `{\rtf1\ansi\ansicpg1252\uc1{\fonttbl{\f0 Times;}}{\colortbl;\red0;}{\info{\title Bee \'e9t\'e9}{\author X}}` +
		`{\*\generator Hand}\pard Caf\'e9 {\b bold}\par Snowman \u9731?, dash\emdash{}end\line {\*\unknown hidden}` +
		`{\pict\pngblip 89504e47}{\field{\*\fldinst HYPERLINK "x"}{\fldrslt link text}}\par` +
		`\trowd A\cell B\cell\row}`
	text, title, err := extract.Extract(extract.RTF, []byte(raw), 0)
	require.NoError(t, err)
	require.Equal(t, "Café bold\n\nSnowman ☃, dash—end\nlink text\n\nA | B", text)
	require.Equal(t, "Bee été", title)
}

// pdfOf builds a PDF of the given objects (numbered from 1; the first is
// the catalog) with a correct cross-reference table.
func pdfOf(objects ...string) []byte {
	var b bytes.Buffer
	b.WriteString("%PDF-1.7\n")
	offs := make([]int, len(objects))
	for i, o := range objects {
		offs[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objects)+1)
	for _, off := range offs {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objects)+1, xref)
	return b.Bytes()
}

func stream(dict, data string) string {
	return fmt.Sprintf("<< %s /Length %d >>\nstream\n%s\nendstream", dict, len(data), data)
}

func deflated(data []byte) string {
	var b bytes.Buffer
	zw := zlib.NewWriter(&b)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return b.String()
}

const helv = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"

// simplePDF has one page per content stream, in Helvetica.
func simplePDF(contents ...string) []byte {
	kids := ""
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", "", helv}
	for i, c := range contents {
		n := len(objs) + 1
		kids += fmt.Sprintf("%d 0 R ", n)
		objs = append(objs, fmt.Sprintf("<< /Type /Page /Parent 2 0 R /Contents %d 0 R >>", n+1), stream("", c))
		_ = i
	}
	objs[1] = fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d /Resources << /Font << /F1 3 0 R >> >> >>", kids, len(contents))
	return pdfOf(objs...)
}

func TestPDFHandWritten(t *testing.T) {
	t.Parallel()
	raw := simplePDF(
		"BT /F1 12 Tf 72 700 Td (Hello) Tj ( world) Tj 0 -14 TD [(Kern)-30(ed) -600 (spaced)] TJ T* (\\(esc\\) caf\\351) Tj ET",
		"BT /F1 10 Tf 72 700 Td (Second page) Tj ET",
	)
	d, err := extract.ExtractDocument(context.Background(), extract.PDF, raw, 0)
	require.NoError(t, err)
	require.Equal(t, "Hello world\nKerned spaced\n(esc) café\n\nSecond page", d.Text)
	require.Equal(t, []int{0, strings.Index(d.Text, "Second")}, d.Pages)
}

func TestPDFWithoutXrefIsRebuilt(t *testing.T) {
	t.Parallel()
	raw := simplePDF("BT /F1 12 Tf 72 700 Td (Damaged but readable) Tj ET")
	raw = raw[:bytes.Index(raw, []byte("xref"))] // no cross-reference, no trailer
	text, _, err := extract.Extract(extract.PDF, raw, 0)
	require.NoError(t, err)
	require.Equal(t, "Damaged but readable", text)
}

// PDF bombs: each is refused, or read within its bounds, quickly.
func TestPDFBombs(t *testing.T) {
	t.Parallel()
	// A page tree with more pages than allowed.
	var pages []string
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", ""}
	for i := range extract.MaxPDFPages + 1 {
		pages = append(pages, fmt.Sprintf("%d 0 R", i+3))
		objs = append(objs, "<< /Type /Page /Parent 2 0 R >>")
	}
	objs[1] = "<< /Type /Pages /Kids [" + strings.Join(pages, " ") + "] >>"
	tooManyPages := pdfOf(objs...)

	// A content stream that inflates a thousand times: past the budget.
	flate := pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
		"<< /Type /Page /Contents 4 0 R >>", stream("/Filter /FlateDecode", deflated(make([]byte, 80<<20))))

	// A small form drawn over and over: each draw decodes it again.
	form := stream("/Type /XObject /Subtype /Form /Filter /FlateDecode", deflated(bytes.Repeat([]byte("q Q "), 256<<10)))
	forms := pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
		"<< /Type /Page /Contents 4 0 R /Resources << /XObject << /X 5 0 R >> >> >>",
		stream("", strings.Repeat("/X Do ", 100)), form)

	// A form that draws itself, a page tree that contains itself, arrays
	// nested past any stack.
	selfForm := pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
		"<< /Type /Page /Contents 4 0 R /Resources 5 0 R >>", stream("", "/X Do /X Do"),
		"<< /XObject << /X 6 0 R >> /Font << /F1 7 0 R >> >>",
		stream("/Type /XObject /Subtype /Form /Resources 5 0 R", "BT /F1 9 Tf (loop) Tj ET /X Do /X Do"), helv)
	loopTree := pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [2 0 R 3 0 R] >>",
		"<< /Type /Page /Parent 2 0 R >>")
	deep := pdfOf("<< /Type /Catalog /Pages 2 0 R /X "+strings.Repeat("[", 100000)+" >>", "<< /Type /Pages /Kids [] >>")

	tests := []struct {
		name string
		raw  []byte
		kind apiary.Kind // 0: extracts
	}{
		{"too many pages", tooManyPages, apiary.KindTooLarge},
		{"flate bomb", flate, apiary.KindTooLarge},
		{"form drawn many times", forms, apiary.KindTooLarge},
		{"form drawing itself", selfForm, 0},
		{"page tree loop", loopTree, 0},
		{"deep arrays", deep, apiary.KindInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text, _, err := extract.Extract(extract.PDF, tt.raw, 0)
			if tt.kind == 0 {
				require.NoError(t, err)
				require.LessOrEqual(t, len(text), extract.MaxText(len(tt.raw), 0))
				return
			}
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
		})
	}
}

// zipRaw builds a zip whose one part declares sizes of its own choosing.
func zipRaw(t testing.TB, name string, data []byte, declared uint64) []byte {
	t.Helper()
	var def bytes.Buffer
	dw, err := flate.NewWriter(&def, flate.BestCompression)
	require.NoError(t, err)
	_, _ = dw.Write(data)
	require.NoError(t, dw.Close())
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, CompressedSize64: uint64(def.Len()), UncompressedSize64: declared})
	require.NoError(t, err)
	_, err = w.Write(def.Bytes())
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func TestZipBombs(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range extract.MaxZipEntries + 1 {
		many = append(many, fmt.Sprintf("f%d", i), "")
	}
	deepXML := docx(t, strings.Repeat("<w:p>", 300)+"<w:r><w:t>deep</w:t></w:r>"+strings.Repeat("</w:p>", 300))
	ratio := zipOf(t, "word/document.xml", `<w:document `+wNS+`><w:body>`+strings.Repeat("<w:p/>", 4<<20)+`</w:body></w:document>`)
	lying := zipRaw(t, "word/document.xml", []byte(`<w:document `+wNS+`><w:body>`+strings.Repeat("<w:p><w:r><w:t>x</w:t></w:r></w:p>", 100000)+`</w:body></w:document>`), 100)
	tests := []struct {
		name   string
		format extract.Format
		raw    []byte
		kind   apiary.Kind
	}{
		{"too many entries", extract.DOCX, zipOf(t, many...), apiary.KindTooLarge},
		{"inflates a thousand times", extract.DOCX, ratio, apiary.KindTooLarge},
		{"inflates past its declared size", extract.DOCX, lying, apiary.KindTooLarge},
		{"XML nested too deep", extract.DOCX, deepXML, apiary.KindInvalid},
		{"not a zip", extract.XLSX, []byte("PK\x03\x04"), apiary.KindInvalid},
		{"no main part", extract.PPTX, zipOf(t, "other.xml", "<x/>"), apiary.KindInvalid},
		{"epub without container", extract.EPUB, zipOf(t, "mimetype", "application/epub+zip"), apiary.KindInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := extract.Extract(tt.format, tt.raw, 0)
			require.Equal(t, tt.kind, apiary.KindOf(err), "%v", err)
			require.NotContains(t, err.Error(), "word/document.xml", "errors name no part")
		})
	}
}

func TestZipTextStaysBounded(t *testing.T) {
	t.Parallel()
	// Shared strings repeated in many cells: the text grows past the bound.
	row := strings.Repeat(`<c t="s"><v>0</v></c>`, 50)
	raw := zipOf(t,
		"xl/workbook.xml", `<workbook><sheets><sheet name="s" id="rId1"/></sheets></workbook>`,
		"xl/_rels/workbook.xml.rels", `<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="x/worksheet"/><Relationship Id="rId2" Target="sharedStrings.xml" Type="x/sharedStrings"/></Relationships>`,
		"xl/sharedStrings.xml", `<sst><si><t>`+strings.Repeat("long shared string ", 50)+`</t></si></sst>`,
		"xl/worksheets/sheet1.xml", `<worksheet><sheetData>`+strings.Repeat("<row>"+row+"</row>", 400)+`</sheetData></worksheet>`)
	_, _, err := extract.Extract(extract.XLSX, raw, 0)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
}

func FuzzPDF(f *testing.F) {
	fuzzFormat(f, extract.PDF, string(readTestdata(f, "hive.pdf")),
		string(simplePDF("BT /F1 12 Tf (a) Tj ET")),
		string(pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [2 0 R 3 0 R] >>", "<< /Type /Page >>")),
		string(pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
			"<< /Type /Page /Contents 4 0 R /Resources 5 0 R >>", stream("", "/X Do"),
			"<< /XObject << /X 6 0 R >> >>", stream("/Subtype /Form /Resources 5 0 R", "/X Do /X Do"))),
		string(pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
			"<< /Type /Page /Contents 4 0 R >>", stream("/Filter /FlateDecode", deflated(make([]byte, 1<<20))))),
		"%PDF-1.4\n1 0 obj "+strings.Repeat("[", 200))
}

func FuzzDOCX(f *testing.F) {
	fuzzFormat(f, extract.DOCX, string(readTestdata(f, "hive.docx")),
		string(docx(f, strings.Repeat("<w:p>", 300))),
		string(zipRaw(f, "word/document.xml", []byte(`<w:document><w:body><w:p><w:r><w:t>xxxxxxxxxxxxxxxxx</w:t></w:r></w:p></w:body></w:document>`), 10)))
}

func FuzzPPTX(f *testing.F) {
	fuzzFormat(f, extract.PPTX, string(readTestdata(f, "slides.pptx")),
		string(zipOf(f, "ppt/presentation.xml", `<p:presentation><p:sldIdLst><p:sldId id="1" r:id="rId1"/></p:sldIdLst></p:presentation>`,
			"ppt/_rels/presentation.xml.rels", `<Relationships><Relationship Id="rId1" Target="slides/slide1.xml"/></Relationships>`,
			"ppt/slides/slide1.xml", `<a:p><a:r><a:t>one</a:t></a:r></a:p>`+strings.Repeat("<a:p>", 300))))
}

func FuzzXLSX(f *testing.F) {
	fuzzFormat(f, extract.XLSX, string(readTestdata(f, "hives.xlsx")),
		string(zipOf(f, "xl/workbook.xml", `<workbook><sheets><sheet name="s" id="rId1"/></sheets></workbook>`,
			"xl/_rels/workbook.xml.rels", `<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>`,
			"xl/worksheets/sheet1.xml", `<worksheet><sheetData><row><c r="XFD1" t="inlineStr"><is><t>x</t></is></c></row></sheetData></worksheet>`)))
}

func FuzzEPUB(f *testing.F) {
	fuzzFormat(f, extract.EPUB, string(readTestdata(f, "hive.epub")),
		string(zipOf(f, "META-INF/container.xml", `<container><rootfiles><rootfile full-path="a/p.opf"/></rootfiles></container>`,
			"a/p.opf", `<package><metadata><title>T</title></metadata><manifest><item id="c" href="c%201.xhtml" media-type="application/xhtml+xml"/></manifest><spine><itemref idref="c"/><itemref idref="c"/></spine></package>`,
			"a/c 1.xhtml", `<html><body><p>chapter</p></body></html>`)))
}

func FuzzRTF(f *testing.F) {
	fuzzFormat(f, extract.RTF, string(readTestdata(f, "hive.rtf")),
		`{\rtf1 {\info{\title t}}a\u-3913?\'e9\par}`, `{\rtf1 `+strings.Repeat("{", 300), `{\rtf1\bin99999 x}`,
		`{\rtf1 \uc0\u55357\u56832 x\cell\row}`)
}
