package extract_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/unicode/norm"

	"github.com/apiaryhq/apiary/pipeline/extract"
)

// TestPDFWordRecall measures the PDF extractor against poppler's pdftotext
// on real PDFs: word recall is the fraction of pdftotext's word tokens (a
// multiset) that the extraction also has. Tokens are maximal runs of
// letters and digits after NFKC normalisation, so punctuation and
// ligatures do not count. It runs when APIARY_TEST_PDFTOTEXT names
// pdftotext and APIARY_TEST_PDF_DIR a directory of PDFs:
//
//	APIARY_TEST_PDFTOTEXT=$(which pdftotext) APIARY_TEST_PDF_DIR=/tmp/pdfs \
//	  go test -run TestPDFWordRecall -v ./pipeline/extract/
func TestPDFWordRecall(t *testing.T) {
	tool, dir := os.Getenv("APIARY_TEST_PDFTOTEXT"), os.Getenv("APIARY_TEST_PDF_DIR")
	if tool == "" || dir == "" {
		t.Skip("set APIARY_TEST_PDFTOTEXT (pdftotext's path) and APIARY_TEST_PDF_DIR (a directory of PDFs) to measure word recall")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.pdf"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no PDFs in %s", dir)
	var refTotal, hitTotal int
	for _, file := range files {
		raw, err := os.ReadFile(file)
		require.NoError(t, err)
		ref, err := exec.Command(tool, "-q", "-enc", "UTF-8", file, "-").Output()
		require.NoError(t, err, "pdftotext %s", file)
		text, _, err := extract.Extract(extract.PDF, raw, 0)
		require.NoError(t, err, file)
		refWords, hits := recall(string(ref), text)
		refTotal += refWords
		hitTotal += hits
		t.Logf("%-40s %7d words  recall %.4f  (%d bytes of text)", filepath.Base(file), refWords, float64(hits)/float64(max(refWords, 1)), len(text))
	}
	r := float64(hitTotal) / float64(refTotal)
	t.Logf("word recall over %d PDFs, %d words: %.4f", len(files), refTotal, r)
	require.GreaterOrEqual(t, r, 0.97)
}

// recall returns how many word tokens ref has and how many of them got has.
func recall(ref, got string) (int, int) {
	have := map[string]int{}
	for _, w := range words(got) {
		have[w]++
	}
	refWords := words(ref)
	hits := 0
	for _, w := range refWords {
		if have[w] > 0 {
			have[w]--
			hits++
		}
	}
	return len(refWords), hits
}

func words(s string) []string {
	return strings.FieldsFunc(norm.NFKC.String(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
}
