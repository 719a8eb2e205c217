package natserr_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natserr"
	"github.com/apiaryhq/apiary/internal/natsserver/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, natstest.IgnoreLeaks()...) }

func TestKindOfClientErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want apiary.Kind
	}{
		{jetstream.ErrStreamNotFound, apiary.KindNotFound},
		{jetstream.ErrConsumerNotFound, apiary.KindNotFound},
		{jetstream.ErrMsgNotFound, apiary.KindNotFound},
		{jetstream.ErrBucketNotFound, apiary.KindNotFound},
		{jetstream.ErrKeyNotFound, apiary.KindNotFound},
		{jetstream.ErrObjectNotFound, apiary.KindNotFound},
		{&jetstream.APIError{Code: 404, ErrorCode: jetstream.JSErrCodeStreamNotFound}, apiary.KindNotFound},

		{jetstream.ErrKeyExists, apiary.KindConflict},
		{jetstream.ErrKeyRevisionMismatch, apiary.KindConflict},
		{jetstream.ErrMsgAlreadyAckd, apiary.KindConflict},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}, apiary.KindConflict},
		{&jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequenceConstant}, apiary.KindConflict},

		{nats.ErrMaxPayload, apiary.KindTooLarge},
		{jetstream.ErrStreamMessageExceedsMaximum, apiary.KindTooLarge},

		{jetstream.ErrInvalidKey, apiary.KindInvalid},
		{jetstream.ErrInvalidBucketName, apiary.KindInvalid},
		{jetstream.ErrInvalidStoreName, apiary.KindInvalid},
		{jetstream.ErrInvalidStreamName, apiary.KindInvalid},
		{nats.ErrBadSubject, apiary.KindInvalid},
		{jetstream.ErrBadRequest, apiary.KindInvalid},

		{context.DeadlineExceeded, apiary.KindUnavailable},
		{nats.ErrTimeout, apiary.KindUnavailable},
		{nats.ErrNoResponders, apiary.KindUnavailable},
		{nats.ErrConnectionClosed, apiary.KindUnavailable},
		{jetstream.ErrConnectionClosed, apiary.KindUnavailable},
		{nats.ErrConnectionDraining, apiary.KindUnavailable},
		{nats.ErrConnectionReconnecting, apiary.KindUnavailable},
		{nats.ErrDisconnected, apiary.KindUnavailable},
		{nats.ErrNoServers, apiary.KindUnavailable},
		{jetstream.ErrNoStreamResponse, apiary.KindUnavailable},
		{jetstream.ErrJetStreamNotEnabled, apiary.KindUnavailable},
		{jetstream.ErrServerShutdown, apiary.KindUnavailable},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, apiary.KindUnavailable},

		{context.Canceled, apiary.KindOther},
		{nats.ErrAuthorization, apiary.KindOther},
		{jetstream.ErrMsgNotBound, apiary.KindOther},
		{errors.New("something else"), apiary.KindOther},
		{nil, apiary.KindOther},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, natserr.Kind(tt.err), "%v", tt.err)
		if tt.err != nil {
			wrapped := fmt.Errorf("nats.go says: %w", tt.err)
			require.Equal(t, tt.want, natserr.Kind(wrapped), "%v", wrapped)
		}
	}
}

func TestWrapKeepsMessageAndCause(t *testing.T) {
	t.Parallel()
	require.NoError(t, natserr.Wrap(nil, "natskv: get %s", "x"))

	err := natserr.Wrap(jetstream.ErrKeyNotFound, "natskv: get %s", "bucket.key")
	require.ErrorIs(t, err, apiary.ErrNotFound)
	require.ErrorIs(t, err, jetstream.ErrKeyNotFound)
	require.Equal(t, "natskv: get bucket.key", apiary.Message(err))
	require.Equal(t, "natskv: get bucket.key: nats: key not found", err.Error())

	// Unclassified errors keep the message and the cause, and no kind.
	err = natserr.Wrap(context.Canceled, "jetstream: ack %s", "job_1")
	require.Equal(t, apiary.KindOther, apiary.KindOf(err))
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, "jetstream: ack job_1: context canceled", err.Error())
}

// The errors a real server and client give, end to end.
func TestKindOfServerErrors(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t)
	ctx := t.Context()

	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full.>"}, MaxMsgs: 1, Discard: jetstream.DiscardNew})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "full.a", []byte("1"))
	require.NoError(t, err)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "kv"})
	require.NoError(t, err)
	rev, err := kv.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)
	expired, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel()
	canceled, cancel := context.WithCancel(ctx)
	cancel()

	tests := []struct {
		name string
		call func() error
		want apiary.Kind
	}{
		{"a missing stream", func() error { _, err := js.Stream(ctx, "NOPE"); return err }, apiary.KindNotFound},
		{"a missing key", func() error { _, err := kv.Get(ctx, "nope"); return err }, apiary.KindNotFound},
		{"a second create", func() error { _, err := kv.Create(ctx, "k", []byte("w")); return err }, apiary.KindConflict},
		{"a stale update", func() error { _, err := kv.Update(ctx, "k", []byte("w"), rev+5); return err }, apiary.KindConflict},
		{"an overlapping stream", func() error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OVERLAP", Subjects: []string{"full.a"}})
			return err
		}, apiary.KindInvalid},
		{"a full stream", func() error { _, err := js.Publish(ctx, "full.b", []byte("2")); return err }, apiary.KindUnavailable},
		{"a payload over the server's limit", func() error {
			return nc.Publish("big", bytes.Repeat([]byte{1}, int(nc.MaxPayload())+1))
		}, apiary.KindTooLarge},
		{"a passed deadline", func() error { _, err := kv.Get(expired, "k"); return err }, apiary.KindUnavailable},
		{"a canceled call", func() error { _, err := kv.Get(canceled, "k"); return err }, apiary.KindOther},
	}
	for _, tt := range tests {
		err := tt.call()
		require.Error(t, err, tt.name)
		require.Equal(t, tt.want, natserr.Kind(err), "%s: %v", tt.name, err)
	}

	nc.Close()
	_, err = kv.Get(ctx, "k")
	require.Error(t, err)
	require.Equal(t, apiary.KindUnavailable, natserr.Kind(err), "a closed connection: %v", err)
}
