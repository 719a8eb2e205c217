package sqs

import (
	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
)

// ForgeDelivery returns a delivery of job from q with receipt handle handle, as if
// received: tests use it to ack a receipt SQS never issued.
func ForgeDelivery(q *Queue, job apiary.JobID, handle string) *queue.Delivery {
	msg := apiary.JobMessage{Account: "acc_sqstest", Job: job}
	return queue.NewDelivery(msg, 1, &receipt{q: q, handle: handle, job: job, attempt: 1})
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
