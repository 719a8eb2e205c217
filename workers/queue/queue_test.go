package queue_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary/workers/queue"
)

func TestReason(t *testing.T) {
	t.Parallel()
	require.Equal(t, strings.Repeat("a", queue.MaxReasonLen), queue.Reason(strings.Repeat("a", queue.MaxReasonLen+3)))
	require.Len(t, queue.Reason(strings.Repeat("a", queue.MaxReasonLen-1)+"é"), queue.MaxReasonLen-1, "never cut inside a rune")
	require.Equal(t, "aé", queue.Reason("aé"))
}
