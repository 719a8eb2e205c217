package workers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/storage"
)

// A document whose text would pass its bound fails alone, TooLarge, with
// its reason; the job goes on with its other documents.
func TestOversizedExtractionFailsOnlyItsDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var bomb strings.Builder // long column names over many one-digit rows
	for i := range 40 {
		fmt.Fprintf(&bomb, "%s%d,", strings.Repeat("column name ", 20), i)
	}
	bomb.WriteString("last\n")
	bomb.WriteString(strings.Repeat(strings.Repeat("1,", 40)+"1\n", 200))
	j := e.submit(t,
		apiary.Document{ID: "bomb.csv", ContentType: "text/csv", Raw: []byte(bomb.String())},
		doc("fine.txt", "Bees dance to tell each other where the flowers are."),
	)
	require.NoError(t, e.handler.Handle(t.Context(), delivery(j, 1)))

	got := e.job(t, j.ID)
	require.Equal(t, apiary.JobSucceeded, got.Status)
	require.Equal(t, 1, got.Counts.DocumentsDone)
	require.Equal(t, 1, got.Counts.DocumentsFailed)
	require.Len(t, got.Errors, 1)
	require.Equal(t, apiary.DocumentID("bomb.csv"), got.Errors[0].DocumentID)
	require.Contains(t, got.Errors[0].Reason, "extract csv: the text would pass")
	n, err := e.vecs.Count(t.Context(), "acme", storage.VectorFilter{Document: "bomb.csv"})
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = e.vecs.Count(t.Context(), "acme", storage.VectorFilter{Document: "fine.txt"})
	require.NoError(t, err)
	require.NotZero(t, n)
}
