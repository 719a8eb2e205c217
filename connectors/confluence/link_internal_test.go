package confluence

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLinkNext(t *testing.T) {
	t.Parallel()
	for header, want := range map[string]string{
		`</wiki/api/v2/pages?cursor=abc&limit=5>; rel="next", <https://x.atlassian.net/wiki>; rel="base"`: "/wiki/api/v2/pages?cursor=abc&limit=5",
		`<https://x.atlassian.net/wiki>; rel="base", </p?cursor=a,b>; rel=next`:                           "/p?cursor=a,b",
		`</p?cursor=1>; rel="prev next"`:             "/p?cursor=1",
		`</p?cursor=1>; rel="prev"`:                  "",
		`<https://x.atlassian.net/wiki>; rel="base"`: "",
		`garbage`:      "",
		`</p?cursor=1`: "",
	} {
		require.Equal(t, want, linkNext(http.Header{"Link": {header}}), header)
	}
}
