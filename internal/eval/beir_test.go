package eval

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadCorpusStreams(t *testing.T) {
	t.Parallel()
	in := `{"_id":"d1","title":"One","text":"first"}

{"_id":"d2","text":"second","metadata":{"x":1}}
{"_id":"d3","title":"","text":"no newline at the end"}`
	var got []Doc
	require.NoError(t, ReadCorpus(strings.NewReader(in), func(d Doc) error {
		got = append(got, d)
		return nil
	}))
	require.Equal(t, []Doc{{"d1", "One", "first"}, {"d2", "", "second"}, {"d3", "", "no newline at the end"}}, got)

	stop := errors.New("stop")
	n := 0
	err := ReadCorpus(strings.NewReader(in), func(Doc) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n, "stops at the callback's first error")

	err = ReadCorpus(strings.NewReader(`{"_id":"d1","text":"a"}`+"\n"+`{"text":"b"}`), func(Doc) error { return nil })
	require.ErrorContains(t, err, "line 2: no _id")
	err = ReadCorpus(strings.NewReader(`{"_id":`), func(Doc) error { return nil })
	require.ErrorContains(t, err, "line 1")
}

func TestReadQueries(t *testing.T) {
	t.Parallel()
	got, err := ReadQueries(strings.NewReader(`{"_id":"q1","text":"what is a hive","metadata":{}}` + "\n"))
	require.NoError(t, err)
	require.Equal(t, []Query{{"q1", "what is a hive"}}, got)
	_, err = ReadQueries(strings.NewReader(`{"_id":"q1","text":" "}`))
	require.ErrorContains(t, err, "line 1")
}

func TestReadQrels(t *testing.T) {
	t.Parallel()
	got, err := ReadQrels(strings.NewReader("query-id\tcorpus-id\tscore\nq1\td1\t2\r\nq1\td2\t0\n\nq2\td1\t1\n"))
	require.NoError(t, err)
	require.Equal(t, Qrels{"q1": {"d1": 2, "d2": 0}, "q2": {"d1": 1}}, got)
	require.Equal(t, 1, got.Relevant("q1"))
	require.Zero(t, got.Relevant("q9"))

	got, err = ReadQrels(strings.NewReader("q1\td1\t1\n"))
	require.NoError(t, err, "the header is optional")
	require.Equal(t, Qrels{"q1": {"d1": 1}}, got)

	_, err = ReadQrels(strings.NewReader(QrelsHeader + "\nq1\td1\n"))
	require.ErrorContains(t, err, "line 2: want 3")
	_, err = ReadQrels(strings.NewReader("q1\td1\thigh\n"))
	require.ErrorContains(t, err, "line 1: score")
}
