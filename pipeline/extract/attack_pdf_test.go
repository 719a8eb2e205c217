package extract_test

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/pipeline/extract"
)

// TestAttackPDFObjectStreamOffsetOverflow: an object stream that places
// an object at an offset near the largest int64. first+offset wrapped to a
// negative position and the lexer indexed the data with it: a 459-byte PDF
// panicked the worker (index out of range). The object is missing instead.
func TestAttackPDFObjectStreamOffsetOverflow(t *testing.T) {
	t.Parallel()
	raw := pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
		"<< /Type /Page /Contents 6 0 R >>", "null",
		stream("/Type /ObjStm /N 1 /First 22", "6 9223372036854775800 "))
	require.NotPanics(t, func() { _, _, _ = extract.Extract(extract.PDF, raw, 0) })
}

// overlappingPDF is a page tree of n kids, each an object that opens
// open (a string) and never closes it: every object, parsed,
// runs to the end of the file.
func overlappingPDF(n int, open string) []byte {
	objs := []string{"<< /Type /Catalog /Pages 2 0 R >>", ""}
	var kids strings.Builder
	for i := range n {
		fmt.Fprintf(&kids, "%d 0 R ", i+3)
		objs = append(objs, open)
	}
	objs[1] = "<< /Type /Pages /Kids [" + kids.String() + "] >>"
	return pdfOf(objs...)
}

// TestAttackPDFOverlappingObjectsAreNotQuadratic: objects that each open a
// string and never close it, so that each, parsed, takes the
// rest of the file; and, without a cross-reference, many streams without
// "endstream", each searched for to the end of the file. Every parsed
// object was kept: a 194 KB PDF of 4,000 such kids allocated 2.1 GB and a 390 KB one 8 GB (a
// 1 MB one some 50 GB), and a 692 KB file of 32,000 "n 0 obj<<>>stream"
// took 6.6 s of CPU to rebuild its cross-reference (30 MB: hours). Bytes
// parsed (and searched for "endstream") count against the same budget as bytes decoded. Not parallel: it
// reads the allocation counter.
func TestAttackPDFOverlappingObjectsAreNotQuadratic(t *testing.T) {
	var noEnd bytes.Buffer
	noEnd.WriteString("%PDF-1.4\n")
	for i := range 32000 {
		fmt.Fprintf(&noEnd, "%d 0 obj<<>>stream\n", i+1)
	}
	for name, raw := range map[string][]byte{
		"strings":                 overlappingPDF(8000, "("),
		"hex strings":             overlappingPDF(8000, "<"),
		"streams without the end": noEnd.Bytes(),
	} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _, err := extract.Extract(extract.PDF, raw, 0)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d-byte file: %d bytes allocated: %v", name, len(raw), alloc, err)
		require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%s: %v", name, err)
		// Parsed strings grow by appending (some 5 times their length in
		// all); the budget bounds their sum to the file's, not its square.
		require.LessOrEqual(t, alloc, uint64(8*(extract.InflateRatio*len(raw)+extract.InflateSlack)),
			"%s: %d bytes allocated for a file of %d", name, alloc, len(raw))
	}
}

// type0PDF is a one-page PDF showing "ab" in a composite font whose
// descendant has the widths w.
func type0PDF(w string) []byte {
	font := "<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H /DescendantFonts [<< /Subtype /CIDFontType2 /W " + w + " >>] >>"
	return pdfOf("<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] >>",
		"<< /Type /Page /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>", stream("", "BT /F1 1 Tf (ab) Tj ET"), font)
}

// TestAttackPDFFontWidthsAreBounded: a composite font's W array of the
// same range of 131,071 CIDs given again and again. Each range was written
// into the widths map while the map was below its bound, which the first
// range had not reached: a 5 KB PDF of 400 ranges took 2.4 s of CPU (1 MB:
// some 8 minutes), per font that shares the array. Widths read count
// against the document's budget.
func TestAttackPDFFontWidthsAreBounded(t *testing.T) {
	t.Parallel()
	raw := type0PDF("[" + strings.Repeat("0 131070 1 ", 400) + "]")
	_, _, err := extract.Extract(extract.PDF, raw, 0)
	require.Equal(t, apiary.KindTooLarge, apiary.KindOf(err), "%v", err)

	// A font's widths as usual are read.
	_, _, err = extract.Extract(extract.PDF, type0PDF("[1 [500 600] 3 200 0.5]"), 0)
	require.NoError(t, err)
}

// cancelAfter is a context whose Err reports Canceled from its n-th call on.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestAttackPDFOnePageHonoursTheContext: the context was looked at between
// pages and form XObjects only, so one page of many operators ran to its
// end whatever the context said, and a context cancelled during the last
// page gave a partial text and no error. A 30 KB one-page PDF took 117 s
// past a 20 s deadline (with the codespace attack now bounded, any
// operator-heavy page does the same within the decode budget: 64 times
// the file plus 64 MiB of operators). Extraction now stops within a
// thousand operators.
func TestAttackPDFOnePageHonoursTheContext(t *testing.T) {
	t.Parallel()
	content := "BT /F1 12 Tf " + strings.Repeat("(a) Tj ", 100000) + "ET"
	raw := simplePDF(content)
	ctx := &cancelAfter{Context: context.Background()}
	ctx.n.Store(3) // past opening and the page tree, into the page
	_, err := extract.ExtractDocument(ctx, extract.PDF, raw, 0)
	require.Equal(t, apiary.KindUnavailable, apiary.KindOf(err), "%v", err)
	require.ErrorIs(t, err, context.Canceled)
}
