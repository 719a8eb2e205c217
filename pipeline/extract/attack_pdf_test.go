package extract_test

import (
	"testing"

	"github.com/stretchr/testify/require"

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
