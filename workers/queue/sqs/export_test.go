package sqs

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// ForgeDelivery returns a delivery of job with receipt handle handle, as if
// received: tests use it to ack a receipt SQS never issued.
func ForgeDelivery(job apiary.JobID, handle string) *queue.Delivery {
	return &queue.Delivery{
		Msg:     apiary.JobMessage{Account: "acc_sqstest", Job: job},
		Attempt: 1,
		Receipt: &receipt{handle: handle},
	}
}

// PendingAcks is how many Acks wait in q's open batch.
func PendingAcks(q *Queue) int {
	if q.acks == nil {
		return 0
	}
	q.acks.mu.Lock()
	defer q.acks.mu.Unlock()
	if q.acks.open == nil {
		return 0
	}
	return len(q.acks.open.reqs)
}
