package natsserver_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/internal/natsserver"
	"github.com/apiaryhq/apiary/storage/natskv"
	"github.com/apiaryhq/apiary/storage/records"
	"github.com/apiaryhq/apiary/workers/events"
	"github.com/apiaryhq/apiary/workers/events/natsbus"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestThreeNodeCluster runs Apiary's records, queue and event bus with three
// replicas on a real three-node JetStream cluster, then stops one node: every
// record, job and event is still there.
func TestThreeNodeCluster(t *testing.T) {
	const nodes = 3
	ports := make([]int, nodes)
	var routes []string
	for i := range ports {
		ports[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i]))
	}
	servers := make([]*natsserver.Server, nodes)
	urls := make([]string, nodes)
	secret, err := natsserver.NewSecret()
	require.NoError(t, err)
	for i := range servers {
		srv, err := natsserver.Start(natsserver.Config{
			StoreDir: t.TempDir(), Name: fmt.Sprintf("n%d", i+1), ReadyTimeout: 30 * time.Second,
			Cluster: natsserver.Cluster{Name: "apiary-test", Port: ports[i], Routes: routes, Secret: secret},
		})
		require.NoError(t, err)
		servers[i] = srv
		urls[i] = srv.URL()
	}
	stopped := map[int]bool{}
	t.Cleanup(func() {
		for i, s := range servers {
			if !stopped[i] {
				s.Shutdown()
			}
		}
	})

	for i, u := range urls {
		requireAuthenticated(t, u)
		requireRawRefused(t, fmt.Sprintf("127.0.0.1:%d", ports[i])) // the route port
	}

	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.Eventually(t, func() bool { // the cluster has elected a meta leader
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(actx)
		return err == nil
	}, time.Minute, 100*time.Millisecond)

	recs, err := records.Open(ctx, natskv.NewKVStore(js, natskv.Config{Replicas: nodes}))
	require.NoError(t, err)
	q, err := jsqueue.New(ctx, jsqueue.Config{Conn: nc, Replicas: nodes, Lease: 5 * time.Second})
	require.NoError(t, err)
	bus, err := natsbus.New(ctx, natsbus.Config{Conn: nc, Replicas: nodes})
	require.NoError(t, err)

	for _, name := range []string{"KV_apiary_jobs", "APIARY_JOBS", "APIARY_EVENTS"} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
		require.Equal(t, nodes, s.CachedInfo().Config.Replicas, "%s replicas", name)
	}

	now := time.Now().UTC()
	job := apiary.Job{ID: apiary.NewJobID(), Account: "acme", Status: apiary.JobQueued, Version: 1, CreatedAt: now, UpdatedAt: now}
	require.NoError(t, recs.CreateJob(ctx, job))
	require.NoError(t, q.Enqueue(ctx, apiary.JobMessage{Account: job.Account, Job: job.ID}))
	require.NoError(t, bus.Publish(ctx, apiary.NewJobEvent(job, apiary.EventJobQueued)))

	// Lose a node: the replicas elsewhere keep serving.
	servers[0].Shutdown()
	stopped[0] = true

	// Each try gets its own short deadline: a request sent while the cluster
	// elects new leaders may get no answer at all.
	try := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 3*time.Second) }
	require.Eventually(t, func() bool {
		ctx, cancel := try()
		defer cancel()
		got, err := recs.Job(ctx, "acme", job.ID)
		return err == nil && got.ID == job.ID
	}, time.Minute, 100*time.Millisecond, "the job record survives a node")
	var delivered bool
	require.Eventually(t, func() bool {
		ctx, cancel := try()
		defer cancel()
		ds, err := q.Receive(ctx, 1)
		if err != nil || len(ds) == 0 {
			return false
		}
		delivered = ds[0].Msg.Job == job.ID
		return ds[0].Ack(ctx) == nil
	}, time.Minute, 100*time.Millisecond, "the queued job survives a node")
	require.True(t, delivered)
	var evs []apiary.Event
	require.Eventually(t, func() bool {
		ctx, cancel := try()
		defer cancel()
		evs, err = bus.Replay(ctx, events.Filter{Account: "acme", Job: job.ID}, 10)
		return err == nil && len(evs) == 1
	}, time.Minute, 100*time.Millisecond, "the event survives a node")
	require.Equal(t, apiary.EventJobQueued, evs[0].Type)
}
