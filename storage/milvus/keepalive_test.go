package milvus

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/milvus-io/milvus-sdk-go/v2/client"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// pipeListener is a net.Listener whose connections are in-memory pipes, so
// that a gRPC client and server run inside a synctest bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// TestKeepaliveDoesNotProvokeGoAway: a gRPC server with the default
// keepalive enforcement (a ping at most every 5 min, none while no call is
// open: grpc-go's default, and gRPC C++'s in milvus-lite) sends GOAWAY
// too_many_pings to a client with the SDK's keepalive within a minute of
// idleness, dropping the connection; with our dial options the connection
// stays up. Time runs in a synctest bubble: the ten idle minutes take none.
func TestKeepaliveDoesNotProvokeGoAway(t *testing.T) {
	t.Parallel()
	ours, err := Config{Addr: "localhost:19530"}.dialOptions()
	require.NoError(t, err)
	if ours == nil {
		ours = client.DefaultGrpcOpts // as the SDK does with no options
	}
	tests := []struct {
		name       string
		opts       []grpc.DialOption
		wantGoAway bool
	}{
		{"the SDK's defaults", client.DefaultGrpcOpts, true},
		{"ours", ours, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newPipeListener()
				srv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Minute}))
				served := make(chan struct{})
				go func() {
					defer close(served)
					_ = srv.Serve(l)
				}()
				opts := append(slices.Clone(tt.opts), grpc.WithContextDialer(l.dial),
					grpc.WithTransportCredentials(insecure.NewCredentials()))
				cc, err := grpc.NewClient("passthrough:///milvus", opts...)
				require.NoError(t, err)
				defer func() {
					_ = cc.Close()
					srv.Stop()
					<-served
				}()
				cc.Connect()
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
					require.True(t, cc.WaitForStateChange(ctx, s), "the connection never became ready")
				}

				idle, cancelIdle := context.WithTimeout(t.Context(), 10*time.Minute)
				defer cancelIdle()
				dropped := cc.WaitForStateChange(idle, connectivity.Ready)
				require.Equal(t, tt.wantGoAway, dropped, "connection dropped within 10 idle minutes (now %s)", cc.GetState())
			})
		})
	}
}
