package milvus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/apiaryhq/apiary"
	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want apiary.Kind
	}{
		{context.DeadlineExceeded, apiary.KindUnavailable},
		{fmt.Errorf("wrapped: %w", context.Canceled), apiary.KindUnavailable},
		{client.ErrClientNotReady, apiary.KindUnavailable},
		{status.Error(codes.Unavailable, "connection refused"), apiary.KindUnavailable},
		{status.Error(codes.DeadlineExceeded, "slow"), apiary.KindUnavailable},
		{fmt.Errorf("x: %w", status.Error(codes.ResourceExhausted, "busy")), apiary.KindUnavailable},
		{status.Error(codes.InvalidArgument, "bad"), apiary.KindInvalid},
		{client.ErrServiceFailed(errors.New("request is rejected by grpc RateLimiter middleware, rate limit exceeded")), apiary.KindUnavailable},
		{client.ErrServiceFailed(errors.New("collection not loaded")), apiary.KindUnavailable},
		{client.ErrServiceFailed(errors.New("something broke")), apiary.KindOther},
		{status.Error(codes.Internal, "panic"), apiary.KindOther},
		{apiary.E(apiary.KindTooLarge, "big"), apiary.KindTooLarge},
	}
	for _, tt := range tests {
		err := classify(tt.err, "search", "acc-1")
		require.Equal(t, tt.want, apiary.KindOf(err), "classify(%v)", tt.err)
		require.ErrorIs(t, err, tt.err)
		require.Contains(t, err.Error(), "milvus: search acc-1")
	}
	require.NoError(t, classify(nil, "search", ""))
}
