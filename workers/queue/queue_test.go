package queue_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

func TestReason(t *testing.T) {
	t.Parallel()
	require.Equal(t, strings.Repeat("a", queue.MaxReasonLen), queue.Reason(strings.Repeat("a", queue.MaxReasonLen+3)))
	require.Len(t, queue.Reason(strings.Repeat("a", queue.MaxReasonLen-1)+"é"), queue.MaxReasonLen-1, "never cut inside a rune")
	require.Equal(t, "aé", queue.Reason("aé"))
}

// TestDeliverySettlesThroughItsSettler: a delivery's methods carry out the
// adapter's settler; one without a settler refuses with KindInvalid.
func TestDeliverySettlesThroughItsSettler(t *testing.T) {
	t.Parallel()
	msg := apiary.JobMessage{Account: "acc_1", Job: "job_1"}
	s := &recorder{}
	d := queue.NewDelivery(msg, 2, s)
	require.Equal(t, msg, d.Msg)
	require.Equal(t, 2, d.Attempt)
	ctx := t.Context()
	require.NoError(t, d.Extend(ctx))
	require.NoError(t, d.Nack(ctx, time.Second))
	require.NoError(t, d.Term(ctx, "why"))
	require.NoError(t, d.Ack(ctx))
	require.Equal(t, []string{"extend", "nack 1s", "term why", "ack"}, s.calls)

	for name, d := range map[string]*queue.Delivery{"literal": {Msg: msg, Attempt: 1}, "nil": nil} {
		for op, settle := range map[string]func() error{
			"ack":    func() error { return d.Ack(ctx) },
			"nack":   func() error { return d.Nack(ctx, 0) },
			"extend": func() error { return d.Extend(ctx) },
			"term":   func() error { return d.Term(ctx, "") },
		} {
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(settle()), "%s delivery: %s", name, op)
		}
	}
}

// recorder is a Settler that records its calls.
type recorder struct{ calls []string }

func (r *recorder) Ack(context.Context) error { r.calls = append(r.calls, "ack"); return nil }
func (r *recorder) Nack(_ context.Context, d time.Duration) error {
	r.calls = append(r.calls, "nack "+d.String())
	return nil
}
func (r *recorder) Extend(context.Context) error { r.calls = append(r.calls, "extend"); return nil }
func (r *recorder) Term(_ context.Context, reason string) error {
	r.calls = append(r.calls, "term "+reason)
	return nil
}
