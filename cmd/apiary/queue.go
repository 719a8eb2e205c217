package main

import (
	"context"

	"github.com/apiaryhq/apiary/workers"
	"github.com/apiaryhq/apiary/workers/queue"
	jsqueue "github.com/apiaryhq/apiary/workers/queue/jetstream"
	sqsqueue "github.com/apiaryhq/apiary/workers/queue/sqs"
)

// QueueConfig chooses the job queue (--queue, an entry of queues).
type QueueConfig struct {
	Name        string
	SQSQueue    string
	SQSEndpoint string
}

func (c *QueueConfig) register(f *flags) {
	choice(f, &c.Name, "queue", queues, "job queue")
	f.str(&c.SQSQueue, "sqs-queue", "apiary-jobs", "SQS queue name; it and <name>-dlq are created if missing")
	f.str(&c.SQSEndpoint, "sqs-endpoint", "", "SQS endpoint URL (empty: AWS's, from AWS_REGION)")
}

// queues are the job queues --queue names. Their lease is --lease; a queue
// with Close is closed after the workers stop, so pending acks go first.
var queues = table[queue.Queue]{
	{name: "jetstream", open: func(ctx context.Context, a *app) (queue.Queue, error) {
		return jsqueue.New(ctx, jsqueue.Config{Conn: a.nc, Lease: a.cfg.Workers.Lease, Replicas: a.cfg.NATS.Replicas})
	}},
	{name: "sqs", open: func(ctx context.Context, a *app) (queue.Queue, error) {
		aws, err := a.aws(ctx)
		if err != nil {
			return nil, err
		}
		return sqsqueue.New(ctx, sqsqueue.Config{
			Client: sqsqueue.NewClient(aws, a.cfg.Queue.SQSEndpoint),
			Queue:  a.cfg.Queue.SQSQueue,
			Lease:  a.cfg.Workers.Lease,
			// The redrive backstop stays beyond the workers' own limit
			// (outage retries included), so a job is marked failed (with
			// its reason) before SQS parks it.
			MaxReceiveCount: max(10, workers.PoolConfig{
				MaxAttempts:  a.cfg.Workers.MaxAttempts,
				OutageGiveUp: a.cfg.Workers.OutageGiveUp,
			}.MaxDeliveries()+2),
		})
	}},
}
