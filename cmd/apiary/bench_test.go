package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBenchCommand runs `apiary bench` on the embedded engines and checks
// that it reports a rate and the baseline ratio.
func TestBenchCommand(t *testing.T) {
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"bench", "--documents", "24", "--jobs", "2", "--embedder", "local"}, &out, &errs)
	require.NoError(t, err, errs.String())
	require.Regexp(t, regexp.MustCompile(`embedded\s+[0-9.]+ documents/s\s+1\.00x embedded`), out.String())
	require.Contains(t, out.String(), "distributed  skipped")
}
