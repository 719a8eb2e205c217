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

// maxReceiveCount is the SQS redrive backstop: beyond the workers' own
// limit (outage retries included), so that a job is marked failed (with
// its reason) before SQS parks it.
func (c WorkersConfig) maxReceiveCount() int {
	return max(10, workers.PoolConfig{MaxAttempts: c.MaxAttempts, OutageGiveUp: c.OutageGiveUp}.MaxDeliveries()+2)
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
			Client:          sqsqueue.NewClient(aws, a.cfg.Queue.SQSEndpoint),
			Queue:           a.cfg.Queue.SQSQueue,
			Lease:           a.cfg.Workers.Lease,
			MaxReceiveCount: a.cfg.Workers.maxReceiveCount(),
		})
	}},
}
