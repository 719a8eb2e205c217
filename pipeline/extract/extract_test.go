package extract_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDetect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		filename, contentType string
		want                  extract.Format
	}{
		{"notes.txt", "", extract.Text},
		{"README.md", "", extract.Markdown},
		{"doc.MARKDOWN", "", extract.Markdown},
		{"index.htm", "", extract.HTML},
		{"page.html", "", extract.HTML},
		{"data.json", "", extract.JSON},
		{"table.CSV", "", extract.CSV},
		{"anything", "text/plain; charset=utf-8", extract.Text},
		{"report.txt", "text/html; charset=UTF-8", extract.HTML}, // content type wins
		{"x", "Application/JSON", extract.JSON},
		{"x", "application/ld+json", extract.JSON},
		{"x", "text/csv", extract.CSV},
		{"x", "text/markdown", extract.Markdown},
		{"data.csv", "application/octet-stream", extract.CSV}, // generic type falls through
		{"data.json", "bad;;type", extract.JSON},
	}
	for _, tt := range tests {
		got, err := extract.Detect(tt.filename, tt.contentType)
		require.NoError(t, err, "%q %q", tt.filename, tt.contentType)
		require.Equal(t, tt.want, got, "%q %q", tt.filename, tt.contentType)
	}
}

func TestDetectUnsupported(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]string{{"report.odt", "application/vnd.oasis.opendocument.text"}, {"a.png", ""}, {"noext", ""}, {"", ""}} {
		_, err := extract.Detect(c[0], c[1])
		require.Error(t, err)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
		require.ErrorContains(t, err, "supported are .txt .md .html .json .csv .pdf .docx .pptx .xlsx .epub .rtf")
		require.ErrorContains(t, err, c[0])
	}
}

func TestExtract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		format    extract.Format
		raw       string
		wantText  string
		wantTitle string
	}{
		{
			name: "text normalizes line ends", format: extract.Text,
			raw:      "\uFEFFline one  \r\nline two\r\rline four\n\n",
			wantText: "line one\nline two\n\nline four",
		},
		{
			name: "markdown keeps headings and takes the first h1", format: extract.Markdown,
			raw:       "intro\n\n```\n# not a heading\n```\n## Sub\n# The Title #\n\nBody *text* [link](http://x).\n",
			wantText:  "intro\n\n```\n# not a heading\n```\n## Sub\n# The Title #\n\nBody *text* [link](http://x).",
			wantTitle: "The Title",
		},
		{
			name: "html blocks, script and style dropped", format: extract.HTML,
			raw: `<!doctype html><html><head><title> My
  Page </title><style>body{color:red}</style><script>alert("x")</script></head>
<body><h1>Welcome</h1><p>Hello <b>bold</b>   world.<br>Next line</p>
<ul><li>one</li><li>two</li></ul><noscript>enable js</noscript>
<table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>31</td></tr></table>
<pre>code
  indented</pre><p>a<img alt="logo">b</p></body></html>`,
			wantText:  "Welcome\n\nHello bold world.\nNext line\n\none\ntwo\n\nName | Age\nAnn | 31\n\ncode\n  indented\n\na logo b",
			wantTitle: "My Page",
		},
		{
			name: "html closes paragraphs as a parser would", format: extract.HTML,
			raw:      "<p>one<p>two<div><p>three</div>four<ul><li><p>five<li>six</ul><p>seven<br>eight<pre>\nx\n y</pre><table><tr><td>a<td>b<tr><td>c</table>",
			wantText: "one\n\ntwo\n\nthree\n\nfour\nfive\n\nsix\n\nseven\neight\n\nx\n y\n\na | b\nc",
		},
		{
			name: "json paths", format: extract.JSON,
			raw:       `{"title":"Spec","n":1.5,"ok":true,"none":null,"tags":["a","b"],"author":{"name":"Ann\nLee"},"rows":[{"x":1}]}`,
			wantText:  "title: Spec\nn: 1.5\nok: true\ntags[0]: a\ntags[1]: b\nauthor.name: Ann Lee\nrows[0].x: 1",
			wantTitle: "Spec",
		},
		{
			name: "json scalar", format: extract.JSON,
			raw: `"just a string"`, wantText: "just a string",
		},
		{
			name: "json name as title", format: extract.JSON,
			raw: `{"name":"Widget"}`, wantText: "name: Widget", wantTitle: "Widget",
		},
		{
			name: "csv rows", format: extract.CSV,
			raw:      "name,city,age\nAnn,\"Paris, FR\",31\nBob,,40,extra\n\n",
			wantText: "name; city; age\nname: Ann; city: Paris, FR; age: 31\nname: Bob; age: 40; column 4: extra",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text, title, err := extract.Extract(tt.format, []byte(tt.raw), 0)
			require.NoError(t, err)
			if diff := cmp.Diff(tt.wantText, text); diff != "" {
				t.Errorf("text (-want +got):\n%s", diff)
			}
			require.Equal(t, tt.wantTitle, title)
		})
	}
}

func TestExtractErrorsHoldNoText(t *testing.T) {
	t.Parallel()
	const secret = "SECRETVALUE"
	tests := []struct {
		format extract.Format
		raw    string
	}{
		{extract.Text, secret + "\xff"},
		{extract.JSON, `{"a":"` + secret + `"`},
		{extract.JSON, `{"a": ` + secret + `}`},
		{extract.JSON, `{"a":1} ` + secret},
		{extract.JSON, strings.Repeat("[", 200) + secret},
		{extract.CSV, "a,b\n\"" + secret + "\"x\"\n"},
		{extract.Format("pdf"), secret},
	}
	for _, tt := range tests {
		_, _, err := extract.Extract(tt.format, []byte(tt.raw), 0)
		if tt.format == extract.CSV && err == nil {
			continue // lazy quotes accept it; nothing to check
		}
		require.Error(t, err, "%s %q", tt.format, tt.raw)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
		require.NotContains(t, err.Error(), secret)
		require.NotContains(t, err.Error(), "SECRET")
	}
}

func fuzzFormat(f *testing.F, format extract.Format, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		text, title, err := extract.Extract(format, raw, 0)
		if err != nil {
			require.Contains(t, []apiary.Kind{apiary.KindInvalid, apiary.KindTooLarge}, apiary.KindOf(err), "%v", err)
			return
		}
		require.LessOrEqual(t, len(text), extract.MaxText(len(raw), 0), "text over the bound")
		require.LessOrEqual(t, len(title), extract.MaxTitleBytes, "title over the bound")
		require.True(t, utf8.ValidString(text), "text is not valid UTF-8")
		require.True(t, utf8.ValidString(title), "title is not valid UTF-8")
		// Under a document limit the text never passes it either.
		limit := len(raw)/2 + 1
		text, _, err = extract.Extract(format, raw, limit)
		if err == nil {
			require.LessOrEqual(t, len(text), limit, "text over the document limit")
		}
	})
}

func FuzzText(f *testing.F) {
	fuzzFormat(f, extract.Text, "hello\r\nworld", "\x00\xff", "", strings.Repeat("a\r\n", 100))
}

func FuzzMarkdown(f *testing.F) {
	fuzzFormat(f, extract.Markdown, "# T\n\nbody", "```\n# x", "# ", "# "+strings.Repeat("long title ", 200))
}

func FuzzHTML(f *testing.F) {
	fuzzFormat(f, extract.HTML, "<title>t</title><p>x</p>", "<table><td>a<td>b", "<pre>\n x</pre>", "<script>", strings.Repeat("<div>", 600),
		"<title>"+strings.Repeat("t", 2000)+"</title>", deepHTML(40))
}

func FuzzJSON(f *testing.F) {
	fuzzFormat(f, extract.JSON, `{"a":[1,{"b":"c"}],"title":"t"}`, `[`, `1 2`, strings.Repeat("[", 300),
		jsonKeyPathBomb(20, 300, 200), `{"title":"`+strings.Repeat("t ", 1000)+`"}`)
}

func FuzzCSV(f *testing.F) {
	fuzzFormat(f, extract.CSV, "a,b\n1,2\n", "\"a\"\"b\",c", "a\n\"", csvBomb(4<<10, 200), csvWide(10, 50))
}

func BenchmarkExtractHTML(b *testing.B) {
	page := []byte("<html><head><title>t</title></head><body>" +
		strings.Repeat("<p>Some <b>bold</b> text in a paragraph, with <a href='#'>a link</a>.</p>\n", 500) +
		"</body></html>")
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		if _, _, err := extract.Extract(extract.HTML, page, 0); err != nil {
			b.Fatal(err)
		}
	}
}
