package milvus

import (
	"context"
	"errors"
	"strings"

	"github.com/apiaryhq/apiary"
	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classify translates an error of the Milvus SDK into the root package's
// kinds, so callers act on it without knowing Milvus:
//
//   - the server or the network is down, slow, throttling or still loading,
//     or the call ran out of time: Unavailable (workers retry);
//   - the server rejected the request as malformed: Invalid;
//   - anything else: Other (an internal fault, retried as well).
//
// The message names the operation and subject only; the SDK's error stays
// in the chain for logs and errors.Is.
func classify(err error, op, subject string) error {
	if err == nil {
		return nil
	}
	msg := "milvus: " + op
	if subject != "" {
		msg += " " + subject
	}
	if k := apiary.KindOf(err); k != apiary.KindOther {
		return apiary.Wrap(err, k, "%s", msg)
	}
	return apiary.Wrap(err, kindOf(err), "%s", msg)
}

func kindOf(err error) apiary.Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, client.ErrClientNotReady) {
		return apiary.KindUnavailable
	}
	var st interface{ GRPCStatus() *status.Status }
	if errors.As(err, &st) {
		switch st.GRPCStatus().Code() {
		case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted,
			codes.Aborted, codes.Canceled:
			return apiary.KindUnavailable
		case codes.InvalidArgument, codes.OutOfRange:
			return apiary.KindInvalid
		}
	}
	// The SDK turns a failed response status into a bare error holding the
	// server's reason (client.ErrServiceFailed), without its code.
	reason := strings.ToLower(err.Error())
	for _, s := range transientReasons {
		if strings.Contains(reason, s) {
			return apiary.KindUnavailable
		}
	}
	return apiary.KindOther
}

// transientReasons are fragments of Milvus error reasons that mean "try
// again later": throttling, quotas, nodes or collections not ready yet.
var transientReasons = []string{
	"rate limit", "quota exceeded", "deny to write", "deny to read",
	"not loaded", "loading", "not ready", "no available", "service unavailable",
	"timeout", "memory quota", "disk quota", "channel not found",
}
