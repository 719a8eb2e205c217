package connectors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/connectors"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	type state struct {
		Source uint64 `json:"s"`
		Next   string `json:"n"`
	}
	src := connectors.Source{Location: "site", Items: []string{"a", "b"}}
	in := state{Source: src.Hash(), Next: "x/y"}
	var out state
	require.True(t, connectors.DecodeCursor(connectors.EncodeCursor(in), &out))
	require.Equal(t, in, out)
	for _, bad := range []connectors.Cursor{"%%%", "bm90IGpzb24"} { // not base64; base64 of "not json"
		require.False(t, connectors.DecodeCursor(bad, &out), string(bad))
	}
}

func TestSourceHashNamesLocationAndPicks(t *testing.T) {
	t.Parallel()
	base := connectors.Source{Location: "site", Items: []string{"ab"}}
	require.Equal(t, base.Hash(), connectors.Source{Location: " site ", Items: []string{"ab"}}.Hash(), "surrounding spaces are the same location")
	for _, other := range []connectors.Source{
		{Location: "site"},
		{Location: "site", Items: []string{"a", "b"}},
		{Location: "sitea", Items: []string{"b"}},
		{Location: "other", Items: []string{"ab"}},
	} {
		require.NotEqual(t, base.Hash(), other.Hash(), "%+v", other)
	}
}
