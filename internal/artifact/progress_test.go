package artifact

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLogProgressLogsEveryTenth(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := Log(slog.New(slog.NewJSONHandler(&buf, nil)))
	const url = "https://example.com/x.tgz"
	for _, done := range []int64{0, 5 << 20, 10 << 20, 12 << 20, 25 << 20, 100 << 20} {
		p(Report{URL: url, Done: done, Total: 100 << 20, Rate: 2 << 20})
	}
	p(Report{URL: url, Done: 100 << 20, Total: 100 << 20, Rate: 2 << 20, Final: true})

	type line struct {
		Msg     string  `json:"msg"`
		URL     string  `json:"url"`
		Percent int     `json:"percent"`
		MiB     float64 `json:"mib"`
		Total   float64 `json:"total_mib"`
		Rate    float64 `json:"mib_per_s"`
	}
	var got []line
	for _, raw := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l line
		require.NoError(t, json.Unmarshal([]byte(raw), &l))
		require.Equal(t, url, l.URL)
		require.Equal(t, 100.0, l.Total)
		require.Equal(t, 2.0, l.Rate)
		got = append(got, l)
	}
	var percents []int
	for _, l := range got {
		percents = append(percents, l.Percent)
	}
	require.Equal(t, []int{0, 10, 25, 100, 100}, percents)
	require.Equal(t, "downloading", got[0].Msg)
	require.Equal(t, "download ended", got[len(got)-1].Msg)
}

func TestBarRedrawsOneLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := Bar(&buf)
	p(Report{URL: "https://example.com/dir/x.tgz", Done: 50 << 20, Total: 100 << 20, Rate: 4 << 20})
	require.Equal(t, "\rx.tgz   50% [============>           ]  50.0/100.0 MiB  4.0 MiB/s\x1b[K", buf.String())

	buf.Reset()
	p(Report{URL: "https://example.com/dir/x.tgz", Done: 100 << 20, Total: 100 << 20, Rate: 4 << 20, Final: true})
	require.Equal(t, "\rx.tgz  100% [========================]  100.0/100.0 MiB  4.0 MiB/s\x1b[K\n", buf.String())

	buf.Reset()
	p(Report{URL: "https://example.com/y.jar", Done: 3 << 20, Total: -1, Rate: 1 << 20})
	require.Equal(t, "\ry.jar  3.0 MiB  1.0 MiB/s\x1b[K", buf.String())
}
