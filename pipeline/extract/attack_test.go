package extract_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/pipeline/extract"
)

// attackAlloc extracts raw and returns what it allocated and how long it took.
func attackAlloc(t *testing.T, f extract.Format, raw []byte) (uint64, time.Duration) {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, _, _ = extract.Extract(f, raw, 32<<20)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

// TestAttackJSONLongKeyPathIsNotQuadratic: a JSON file of one long key over
// an array of many one-digit leaves. Each leaf's line is cut to its last
// MaxLabelBytes of path, but the whole path was copied (string(w.path))
// before cutting, once per leaf: a 2 MiB file (1 MiB key, 512k leaves) took
// 44 s of CPU and allocated 128 GB before failing TooLarge. What extraction
// allocates must follow the file. Not parallel: it reads the allocation counter.
func TestAttackJSONLongKeyPathIsNotQuadratic(t *testing.T) {
	raw := []byte(`{"` + strings.Repeat("k", 64<<10) + `":[` + strings.Repeat("0,", 64<<10) + `0]}`)
	alloc, took := attackAlloc(t, extract.JSON, raw)
	t.Logf("%d-byte file: %d bytes allocated in %v", len(raw), alloc, took)
	// The writer may grow (by appending) to MaxText: allow for that, not for
	// a copy of the path per leaf.
	require.LessOrEqual(t, alloc, uint64(16*extract.MaxText(len(raw), 0)+1<<20),
		"%d bytes allocated for a file of %d", alloc, len(raw))
}

// TestAttackLineBreaksAllocationFollowsTheFile: text, Markdown and HTML
// <pre> made only of line breaks. normalize split the text into one string
// header (16 bytes) per line and HTML split it again in collapseBlankLines:
// a 30 MiB upload of "\n" raised the server's VmHWM to 1.5 GB. Not
// parallel: it reads the allocation counter.
func TestAttackLineBreaksAllocationFollowsTheFile(t *testing.T) {
	nl := strings.Repeat("\n", 4<<20)
	for name, in := range map[string]struct {
		f   extract.Format
		raw string
	}{
		"txt LF":    {extract.Text, "x" + nl + "x"},
		"txt CR":    {extract.Text, "x" + strings.Repeat("\r", 4<<20) + "x"},
		"md":        {extract.Markdown, "x" + nl + "x"},
		"html pre":  {extract.HTML, "<pre>" + nl + "</pre>x"},
		"txt lines": {extract.Text, strings.Repeat("a \n", 2<<20)},
	} {
		alloc, took := attackAlloc(t, in.f, []byte(in.raw))
		t.Logf("%s: %d-byte file: %d bytes allocated in %v", name, len(in.raw), alloc, took)
		require.LessOrEqual(t, alloc, uint64(8*len(in.raw)+1<<20),
			"%s: %d bytes allocated for a file of %d", name, alloc, len(in.raw))
	}
}

// TestAttackCSVManyEmptyCellsAllocationFollowsTheFile: one CSV record of
// millions of empty cells. encoding/csv holds the whole record (a string
// header, a field index and a position per cell, grown by doubling) before
// extractCSV sees a cell, though empty cells write no text: a 30 MiB upload
// of commas raised the server's VmHWM to 3.2 GB, and four workers run four
// such files at once. Not parallel: it reads the allocation counter.
func TestAttackCSVManyEmptyCellsAllocationFollowsTheFile(t *testing.T) {
	for name, raw := range map[string]string{
		"empty cells":      "h\n" + strings.Repeat(",", 4<<20) + "\n",
		"empty cells, CRs": "h\n" + strings.Repeat(",\r", 2<<20) + "\n",
		"a wide header":    strings.Repeat(",", 4<<20) + "\nx\n",
	} {
		alloc, took := attackAlloc(t, extract.CSV, []byte(raw))
		t.Logf("%s: %d-byte file: %d bytes allocated in %v", name, len(raw), alloc, took)
		// Empty cells write no text: only copies of the file are allowed.
		require.LessOrEqual(t, alloc, uint64(16*len(raw)+1<<20),
			"%s: %d bytes allocated for a file of %d", name, alloc, len(raw))
	}
}
