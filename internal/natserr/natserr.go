// Package natserr classifies the errors of the NATS client (nats.go and its
// jetstream package) under the root package's kinds. The three NATS adapters
// (workers/queue/jetstream, workers/events/natsbus, storage/natskv) translate
// through it, so that one NATS failure means the same thing in each of them:
//
//   - a missing stream, consumer, bucket, key, object or message is NotFound;
//   - a failed create or compare-and-set, or a second ack, is Conflict;
//   - a message over the server's or the stream's limit is TooLarge;
//   - a name, key or subject the client or the server refuses (an API
//     error 400) is Invalid;
//   - a timeout (the context's deadline included), a closed, draining or
//     reconnecting connection, no responders, JetStream not enabled and a
//     server-side failure (an API error 5xx, such as a full stream) are
//     Unavailable: a retry may succeed;
//   - cancellation and anything else are left unclassified (KindOther):
//     a caller that gave up is no fault of NATS, and an error nobody
//     expected is an internal fault, not an outage.
package natserr

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/apiaryhq/apiary"
)

// Wrap classifies err by Kind under the message fmt.Sprintf(format, args...),
// which names the operation and its subject ("natskv: get apiary_jobs.x");
// an unclassified err is wrapped with the same message. A nil err gives nil.
func Wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf(format, args...)
	if k := Kind(err); k != apiary.KindOther {
		return apiary.Wrap(err, k, "%s", msg)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Kind returns the kind of a NATS client error, KindOther when it has none.
func Kind(err error) apiary.Kind {
	var apiErr *jetstream.APIError
	hasAPIErr := errors.As(err, &apiErr)
	switch {
	case err == nil, errors.Is(err, context.Canceled):
		return apiary.KindOther
	case isAny(err, jetstream.ErrStreamNotFound, jetstream.ErrConsumerNotFound, jetstream.ErrMsgNotFound,
		jetstream.ErrBucketNotFound, jetstream.ErrKeyNotFound, jetstream.ErrKeyDeleted, jetstream.ErrObjectNotFound):
		return apiary.KindNotFound
	case isAny(err, jetstream.ErrKeyExists, jetstream.ErrKeyRevisionMismatch, jetstream.ErrMsgAlreadyAckd),
		hasAPIErr && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
		return apiary.KindConflict
	case isAny(err, nats.ErrMaxPayload, jetstream.ErrStreamMessageExceedsMaximum, jetstream.ErrMaxBytesExceeded):
		return apiary.KindTooLarge
	case isAny(err, jetstream.ErrInvalidKey, jetstream.ErrInvalidBucketName, jetstream.ErrInvalidStoreName,
		jetstream.ErrInvalidStreamName, jetstream.ErrInvalidConsumerName, jetstream.ErrInvalidSubject, nats.ErrBadSubject),
		hasAPIErr && apiErr.Code == 400:
		return apiary.KindInvalid
	case isAny(err, context.DeadlineExceeded, nats.ErrTimeout, jetstream.ErrAsyncPublishTimeout, nats.ErrNoResponders,
		jetstream.ErrNoStreamResponse, jetstream.ErrNoHeartbeat,
		nats.ErrConnectionClosed, jetstream.ErrConnectionClosed, nats.ErrConnectionDraining, nats.ErrDrainTimeout,
		nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrStaleConnection, nats.ErrNoServers,
		nats.ErrReconnectBufExceeded, nats.ErrSlowConsumer, nats.ErrMaxConnectionsExceeded,
		jetstream.ErrServerShutdown, jetstream.ErrConsumerLeadershipChanged, jetstream.ErrConsumerDeleted,
		jetstream.ErrTooManyStalledMsgs, jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount),
		hasAPIErr && apiErr.Code >= 500:
		return apiary.KindUnavailable
	}
	return apiary.KindOther
}

func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
