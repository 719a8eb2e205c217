package extract_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

// Bombs are small files whose text, written naively, is many times their
// size: labels (a CSV header, a JSON key path) repeated before every value.

// csvBomb is one header cell of headerBytes and rows one-cell rows.
func csvBomb(headerBytes, rows int) string {
	return strings.Repeat("h", headerBytes) + "\n" + strings.Repeat("x\n", rows)
}

// csvWide is a header of long column names over many short rows.
func csvWide(cols, rows int) string {
	var b strings.Builder
	for i := range cols {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s%d", strings.Repeat("column name ", 20), i)
	}
	b.WriteByte('\n')
	row := strings.TrimSuffix(strings.Repeat("1,", cols), ",") + "\n"
	b.WriteString(strings.Repeat(row, rows))
	return b.String()
}

// jsonKeyPathBomb nests depth objects under long keys, then puts leaves
// one-digit values at the bottom.
func jsonKeyPathBomb(depth, keyBytes, leaves int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range depth {
		fmt.Fprintf(&b, "%q:{", strings.Repeat("k", keyBytes)+fmt.Sprint(i))
	}
	b.WriteString(`"a":[`)
	b.WriteString(strings.TrimSuffix(strings.Repeat("1,", leaves), ","))
	b.WriteString("]" + strings.Repeat("}", depth+1))
	return b.String()
}

// deepHTML nests depth elements (under the parser's limit of 512) with a
// paragraph of text at each level, and closes none of them.
func deepHTML(depth int) string {
	var b strings.Builder
	for i := range depth {
		fmt.Fprintf(&b, "<div><b id=%d><td>x", i)
	}
	b.WriteString(strings.Repeat("<p>y</p>", 2000))
	return b.String()
}

// TestBombsStayBounded: whatever a bomb does (extract a bounded text, or
// fail TooLarge), the text is never more than MaxText of the file.
func TestBombsStayBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format extract.Format
		raw    string
	}{
		{"csv one long header", extract.CSV, csvBomb(64<<10, 2000)},
		{"csv wide header", extract.CSV, csvWide(40, 2000)},
		{"json key paths", extract.JSON, jsonKeyPathBomb(60, 1000, 4000)},
		{"deep html", extract.HTML, deepHTML(150)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			bound := extract.MaxText(len(tt.raw), 0)
			text, _, err := extract.Extract(tt.format, []byte(tt.raw), 0)
			if err != nil {
				require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
				return
			}
			require.LessOrEqual(t, len(text), bound, "text is %.0f times the file", float64(len(text))/float64(len(tt.raw)))
		})
	}
}

func TestTooLargeSaysWhy(t *testing.T) {
	t.Parallel()
	raw := csvWide(40, 2000)
	_, _, err := extract.Extract(extract.CSV, []byte(raw), 0)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.EqualError(t, err, fmt.Sprintf("extract csv: the text would pass %d bytes (%d times the %d-byte file plus %d)",
		extract.MaxText(len(raw), 0), extract.TextRatio, len(raw), extract.TextSlack))

	_, _, err = extract.Extract(extract.CSV, []byte(raw), 100<<10)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
	require.EqualError(t, err, "extract csv: the text would pass the document limit of 102400 bytes")

	// Formats that never grow still honour the document limit.
	_, _, err = extract.Extract(extract.Text, []byte(strings.Repeat("word ", 100)), 100)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)
}

func TestLongLabelsAreCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 1000)
	text, _, err := extract.Extract(extract.CSV, []byte(long+",b\n1,2\n"), 0)
	require.NoError(t, err)
	lines := strings.Split(text, "\n")
	require.Equal(t, long+"; b", lines[0], "the header line is written whole, once")
	require.Equal(t, strings.Repeat("a", extract.MaxLabelBytes-len("…"))+"…: 1; b: 2", lines[1])

	text, _, err = extract.Extract(extract.JSON, []byte(`{"`+long+`":{"leaf":1}}`), 0)
	require.NoError(t, err)
	require.Equal(t, "…"+strings.Repeat("a", extract.MaxLabelBytes-len("…")-len(".leaf"))+".leaf: 1", text,
		"a key path keeps its end, where the leaf's own key is")

	title := strings.Repeat("t", 5000)
	_, got, err := extract.Extract(extract.HTML, []byte("<title>"+title+"</title><p>x"), 0)
	require.NoError(t, err)
	require.Len(t, got, extract.MaxTitleBytes)
}

// HTML is read as a stream of tokens, not built into a tree (html.Parse
// allocated some 30 times the file for empty elements): what extraction
// allocates follows the file, however many or deep its elements. Not
// parallel: it reads the process's allocation counter.
func TestHTMLAllocationFollowsTheFile(t *testing.T) {
	for name, raw := range map[string][]byte{
		"empty elements": []byte(strings.Repeat("<i></i>", 1<<19)),
		"line breaks":    []byte(strings.Repeat("<br>", 1<<20)),
		"deep":           []byte(deepHTML(20000)),
		"formatting":     []byte(strings.Repeat("<b id=1>", 400) + strings.Repeat("<p>x</p>", 50000)),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		text, _, err := extract.Extract(extract.HTML, raw, 0)
		runtime.ReadMemStats(&after)
		require.NoError(t, err, name)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %.1f", name, float64(alloc)/float64(len(raw)))
		require.LessOrEqual(t, alloc, uint64(8*len(raw)+32*len(text)+1<<20),
			"%s: %d bytes allocated for a file of %d", name, alloc, len(raw))
	}
}

func TestHTMLTitle(t *testing.T) {
	t.Parallel()
	text, title, err := extract.Extract(extract.HTML, []byte("<title>First &amp; best</title><title>Second</title><p>body<svg><title>icon</title></svg>"), 0)
	require.NoError(t, err)
	require.Equal(t, "First & best", title)
	require.Equal(t, "body", text)
}
