package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
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
	// Key-encryption keys are on by default: the keyring is called once per
	// KEK, not once per document (24 documents).
	m := regexp.MustCompile(`embedded .* ([0-9.]+) local calls/document`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	perDoc, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	require.Less(t, perDoc, 0.2, out.String())
}

func TestBenchCommandKeysDirect(t *testing.T) {
	var out, errs bytes.Buffer
	err := run(context.Background(), []string{"bench", "--documents", "24", "--jobs", "2", "--embedder", "local", "--keys-direct"}, &out, &errs)
	require.NoError(t, err, errs.String())
	m := regexp.MustCompile(`embedded .* ([0-9.]+) local calls/document`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	perDoc, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	require.GreaterOrEqual(t, perDoc, 1.0, "without key-encryption keys every document's data key is a provider call: %s", out.String())
}
