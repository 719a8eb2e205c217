package apiary_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
)

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"hello", 10, "hello"},
		{"hello", 3, "hel"},
		{"héllo", 2, "h"}, // never half of "é"
		{"漢字", 5, "漢"},
		{"漢字", 0, ""},
	} {
		require.Equal(t, tc.want, apiary.Truncate(tc.s, tc.n), "%q %d", tc.s, tc.n)
	}
}

func TestCheckMetadata(t *testing.T) {
	t.Parallel()
	keys := func(n, size int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", size)
		}
		return m
	}
	for _, tc := range []struct {
		md   map[string]string
		want string
	}{
		{nil, ""},
		{keys(apiary.MaxMetadataKeys, 10), ""},
		{keys(apiary.MaxMetadataKeys+1, 1), "md: at most 64 keys, got 65"},
		{map[string]string{strings.Repeat("k", 129): "v"}, `md: key "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"… is 129 bytes, the limit is 128`},
		{map[string]string{"a": "", "b": strings.Repeat("v", 2049)}, `md["b"]: value is 2049 bytes, the limit is 2048`},
		{keys(9, 2000), "md: keys and values are 18027 bytes together, the limit is 16384"},
	} {
		err := apiary.CheckMetadata("md", tc.md)
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.EqualError(t, err, tc.want)
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(err))
	}
	require.NoError(t, apiary.CheckTitle("t", strings.Repeat("t", apiary.MaxTitleBytes)))
	require.EqualError(t, apiary.CheckTitle("t", strings.Repeat("t", apiary.MaxTitleBytes+1)), "t: 1025 bytes, the limit is 1024")
}
