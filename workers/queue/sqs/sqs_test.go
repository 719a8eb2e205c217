package sqs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/apiaryhq/apiary"
	"github.com/apiaryhq/apiary/workers/queue"
	"github.com/apiaryhq/apiary/workers/queue/queuetest"
	apsqs "github.com/apiaryhq/apiary/workers/queue/sqs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const endpointVar = "APIARY_TEST_SQS_ENDPOINT"

// faultTransport sits between the SDK and the emulator. It counts the calls
// of each SQS operation; while fault is set it answers every request with a
// canned AWS error; while refusal is set it makes SQS refuse some entries of
// a batch call. Otherwise requests reach the real emulator unchanged.
type faultTransport struct {
	next    *http.Transport
	fault   atomic.Pointer[fault]
	refusal atomic.Pointer[refusal]

	mu    sync.Mutex
	calls map[string]int // by operation, e.g. "DeleteMessageBatch"
}

type fault struct {
	status int
	code   string
}

// refusal makes SQS refuse the entries of op's batch calls that match:
// they are taken out of the request and reported in the response's Failed
// list with code, the way SQS reports an entry it did not store or delete.
type refusal struct {
	op          string
	match       func(entry map[string]any) bool
	code        string
	senderFault bool
	// calls is how many calls of op see the refusal; 0 means every call.
	calls atomic.Int32
}

func (f *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	op := strings.TrimPrefix(req.Header.Get("X-Amz-Target"), "AmazonSQS.")
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	f.mu.Unlock()
	if ft := f.fault.Load(); ft != nil {
		if req.Body != nil {
			_, _ = io.Copy(io.Discard, req.Body)
			_ = req.Body.Close()
		}
		body := `{"__type":"com.amazonaws.sqs#` + ft.code + `","message":"injected"}`
		return &http.Response{
			StatusCode: ft.status,
			Header:     http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
			Body:       io.NopCloser(strings.NewReader(body)),
			Request:    req,
		}, nil
	}
	if r := f.refusal.Load(); r != nil && r.op == op {
		if left := r.calls.Add(-1); left == 0 {
			f.refusal.CompareAndSwap(r, nil)
		}
		return f.refuse(req, r)
	}
	return f.next.RoundTrip(req)
}

// refuse sends req without the entries r matches and adds them to the
// response as failed.
func (f *faultTransport) refuse(req *http.Request, r *refusal) (*http.Response, error) {
	var in map[string]any
	if err := decodeBody(req.Body, &in); err != nil {
		return nil, err
	}
	var kept, failed []any
	entries, _ := in["Entries"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		if r.match(entry) {
			failed = append(failed, map[string]any{"Id": entry["Id"], "Code": r.code, "Message": "injected", "SenderFault": r.senderFault})
		} else {
			kept = append(kept, e)
		}
	}
	out := map[string]any{"Successful": []any{}}
	if len(kept) > 0 {
		in["Entries"] = kept
		body, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		resp, err := f.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return resp, nil
		}
		if err := decodeBody(resp.Body, &out); err != nil {
			return nil, err
		}
	}
	prior, _ := out["Failed"].([]any)
	out["Failed"] = append(prior, failed...)
	body, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &http.Response{
		StatusCode:    http.StatusOK,
		Header:        http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}, nil
}

func decodeBody(body io.ReadCloser, v any) error {
	defer func() { _ = body.Close() }()
	return json.NewDecoder(body).Decode(v)
}

// callsOf reports how many calls of op reached the transport.
func (f *faultTransport) callsOf(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *faultTransport) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.calls)
}

// client returns an SQS client on the emulator, skipping the test when no
// emulator is configured. maxAttempts bounds the SDK's own retries: 1 makes
// injected faults surface at once.
func client(t *testing.T, maxAttempts int) (*awssqs.Client, *faultTransport) {
	t.Helper()
	endpoint := os.Getenv(endpointVar)
	if endpoint == "" {
		t.Skipf("%s is not set: run scripts/test-services.sh start && source .test-services/env", endpointVar)
	}
	tr := &faultTransport{next: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(tr.next.CloseIdleConnections)
	awsCfg := aws.Config{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:       &http.Client{Transport: tr},
		RetryMaxAttempts: maxAttempts,
	}
	return apsqs.NewClient(awsCfg, endpoint), tr
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "apiary-test-" + hex.EncodeToString(b)
}

// newQueue makes a Queue on a fresh queue and deletes both queues when the
// test ends.
func newQueue(t *testing.T, c *awssqs.Client, lease time.Duration) *apsqs.Queue {
	t.Helper()
	return newQueueWith(t, apsqs.Config{Client: c, Lease: lease})
}

// newQueueWith is newQueue with more of cfg: its Queue is a fresh name.
func newQueueWith(t *testing.T, cfg apsqs.Config) *apsqs.Queue {
	t.Helper()
	cfg.Queue = randomName(t)
	cfg.WaitTime = time.Second
	q, err := apsqs.New(t.Context(), cfg)
	require.NoError(t, err)
	c := cfg.Client
	t.Cleanup(func() {
		require.NoError(t, q.Close())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, u := range []string{q.URL(), q.DeadLetterURL()} {
			_, _ = c.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(u)})
		}
	})
	return q
}

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, lease time.Duration) queue.Queue {
		c, _ := client(t, 3)
		return newQueue(t, c, lease)
	})
}

func message() apiary.JobMessage {
	return apiary.JobMessage{Account: "acc_sqstest", Job: apiary.NewJobID()}
}

// receiveOne polls q until a delivery arrives.
func receiveOne(t *testing.T, q *apsqs.Queue) *queue.Delivery {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ds, err := q.Receive(t.Context(), 1)
		require.NoError(t, err)
		if len(ds) == 1 {
			return ds[0]
		}
	}
	require.FailNow(t, "nothing received")
	return nil
}

// receiveRaw polls an SQS queue directly until a message arrives.
func receiveRaw(t *testing.T, c *awssqs.Client, url string) types.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		out, err := c.ReceiveMessage(t.Context(), &awssqs.ReceiveMessageInput{
			QueueUrl:              aws.String(url),
			WaitTimeSeconds:       1,
			MessageAttributeNames: []string{"All"},
		})
		require.NoError(t, err)
		if len(out.Messages) > 0 {
			return out.Messages[0]
		}
	}
	require.FailNow(t, "nothing in "+url)
	return types.Message{}
}

func TestNewCreatesQueueWithDeadLetterQueue(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	require.True(t, strings.HasSuffix(q.DeadLetterURL(), "-dlq"), q.DeadLetterURL())

	dlq, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.DeadLetterURL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	require.NoError(t, err)
	main, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	require.Equal(t, "30", main.Attributes["VisibilityTimeout"])
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"`
	}
	require.NoError(t, json.Unmarshal([]byte(main.Attributes["RedrivePolicy"]), &redrive))
	require.Equal(t, dlq.Attributes["QueueArn"], redrive.DeadLetterTargetArn)
	require.Equal(t, "10", fmt.Sprint(redrive.MaxReceiveCount))

	// New on the existing queues finds them: same URLs, messages kept.
	require.NoError(t, q.Enqueue(t.Context(), message()))
	name := q.URL()[strings.LastIndex(q.URL(), "/")+1:]
	again, err := apsqs.New(t.Context(), apsqs.Config{Client: c, Queue: name, Lease: 30 * time.Second, WaitTime: time.Second})
	require.NoError(t, err)
	require.Equal(t, q.URL(), again.URL())
	require.Equal(t, q.DeadLetterURL(), again.DeadLetterURL())
	d := receiveOne(t, again)
	require.NoError(t, d.Ack(t.Context()))
}

func TestTermSendsToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	msg := message()
	require.NoError(t, q.Enqueue(t.Context(), msg))
	d := receiveOne(t, q)
	require.NoError(t, d.Term(t.Context(), "handler: document is not valid UTF-8"))

	dead := receiveRaw(t, c, q.DeadLetterURL())
	var got apiary.JobMessage
	require.NoError(t, json.Unmarshal([]byte(aws.ToString(dead.Body)), &got))
	require.Equal(t, msg, got)
	require.Equal(t, "handler: document is not valid UTF-8", aws.ToString(dead.MessageAttributes[apsqs.ReasonAttribute].StringValue))
	require.Equal(t, "1", aws.ToString(dead.MessageAttributes[apsqs.AttemptAttribute].StringValue))

	// Gone from the job queue: the message was deleted, not just hidden.
	main, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	require.Equal(t, "0", main.Attributes["ApproximateNumberOfMessages"])
	require.Equal(t, "0", main.Attributes["ApproximateNumberOfMessagesNotVisible"])
}

func TestMalformedMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	for _, body := range []string{"not json", `{"account":"acc_x"}`, `{"account":"Bad Account!","job":"job_x"}`} {
		_, err := c.SendMessage(t.Context(), &awssqs.SendMessageInput{QueueUrl: aws.String(q.URL()), MessageBody: aws.String(body)})
		require.NoError(t, err)
	}
	good := message()
	require.NoError(t, q.Enqueue(t.Context(), good))

	var got []*queue.Delivery
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && len(got) == 0 {
		ds, err := q.Receive(t.Context(), 10)
		require.NoError(t, err)
		got = append(got, ds...)
	}
	require.Len(t, got, 1, "only the well-formed message reaches a worker")
	require.Equal(t, good, got[0].Msg)
	require.NoError(t, got[0].Ack(t.Context()))

	bodies := map[string]string{}
	for range 3 {
		m := receiveRaw(t, c, q.DeadLetterURL())
		bodies[aws.ToString(m.Body)] = aws.ToString(m.MessageAttributes[apsqs.ReasonAttribute].StringValue)
		_, err := c.DeleteMessage(t.Context(), &awssqs.DeleteMessageInput{QueueUrl: aws.String(q.DeadLetterURL()), ReceiptHandle: m.ReceiptHandle})
		require.NoError(t, err)
	}
	require.Len(t, bodies, 3)
	for body, reason := range bodies {
		require.Equal(t, "apiary: malformed job message", reason, body)
	}
}

func TestReceiveMoreThanOneBatch(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	const total = 25
	for range total {
		require.NoError(t, q.Enqueue(t.Context(), message()))
	}
	ds, err := q.Receive(t.Context(), total)
	require.NoError(t, err)
	require.Greater(t, len(ds), 10, "one Receive must loop past SQS's 10 per call")
	require.LessOrEqual(t, len(ds), total)
	seen := map[apiary.JobID]bool{}
	for _, d := range ds {
		require.False(t, seen[d.Msg.Job])
		seen[d.Msg.Job] = true
		require.NoError(t, d.Ack(t.Context()))
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 1)
	q := newQueue(t, c, 30*time.Second)
	ctx := t.Context()

	// A delivery that is no longer in flight: the lease is lost.
	require.NoError(t, q.Enqueue(ctx, message()))
	d := receiveOne(t, q)
	require.NoError(t, d.Ack(ctx))
	err := d.Extend(ctx)
	require.Equal(t, apiary.KindConflict, apiary.KindOf(err), "extend after ack: %v", err)

	// Throttling and refusals, injected at the HTTP layer.
	for _, tc := range []struct {
		fault
		want      apiary.Kind
		wantRetry bool
	}{
		{fault{400, "RequestThrottled"}, apiary.KindUnavailable, true},
		{fault{400, "ThrottlingException"}, apiary.KindUnavailable, true},
		{fault{400, "AccessDeniedException"}, apiary.KindForbidden, false},
		{fault{400, "InvalidClientTokenId"}, apiary.KindUnavailable, false},
		{fault{500, "InternalError"}, apiary.KindUnavailable, false},
	} {
		tr.fault.Store(&tc.fault)
		err := q.Enqueue(ctx, message())
		tr.fault.Store(nil)
		require.Equal(t, tc.want, apiary.KindOf(err), "%s: %v", tc.code, err)
		_, hasRetry := apiary.RetryDelay(err)
		require.Equal(t, tc.wantRetry, hasRetry, "%s: retry hint", tc.code)
	}

	// The queue deleted underneath.
	_, err = c.DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: aws.String(q.URL())})
	require.NoError(t, err)
	err = q.Enqueue(ctx, message())
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err), "enqueue on a deleted queue: %v", err)
	_, err = q.Receive(ctx, 1)
	require.Equal(t, apiary.KindNotFound, apiary.KindOf(err), "receive on a deleted queue: %v", err)

	// A canceled context is reported as such, not as an outage.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, q.Enqueue(cctx, message()), context.Canceled)
}

func TestEnqueueRejectsBadMessages(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueue(t, c, 30*time.Second)
	for _, m := range []apiary.JobMessage{
		{Account: "", Job: apiary.NewJobID()},
		{Account: "acc_ok", Job: ""},
		{Account: "Not OK", Job: apiary.NewJobID()},
	} {
		require.Equal(t, apiary.KindInvalid, apiary.KindOf(q.Enqueue(t.Context(), m)), "%+v", m)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	c := awssqs.New(awssqs.Options{Region: "us-east-1"})
	tests := []struct {
		name string
		cfg  apsqs.Config
	}{
		{"no client", apsqs.Config{Queue: "jobs"}},
		{"no queue", apsqs.Config{Client: c}},
		{"fifo queue", apsqs.Config{Client: c, Queue: "jobs.fifo"}},
		{"name too long", apsqs.Config{Client: c, Queue: strings.Repeat("q", 81)}},
		{"dlq is the queue", apsqs.Config{Client: c, Queue: "jobs", DeadLetterQueue: "jobs"}},
		{"sub-second lease", apsqs.Config{Client: c, Queue: "jobs", Lease: 1500 * time.Millisecond}},
		{"lease over 12h", apsqs.Config{Client: c, Queue: "jobs", Lease: 13 * time.Hour}},
		{"wait over 20s", apsqs.Config{Client: c, Queue: "jobs", WaitTime: 21 * time.Second}},
		{"negative receive count", apsqs.Config{Client: c, Queue: "jobs", MaxReceiveCount: -1}},
		{"ack window over 1s", apsqs.Config{Client: c, Queue: "jobs", AckBatchWindow: 2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := apsqs.New(t.Context(), tt.cfg)
			require.Error(t, err)
			require.Equal(t, apiary.KindInvalid, apiary.KindOf(err), "%v", err)
		})
	}
}

// A Receive cancelled during its long poll must not lose what SQS hands that
// poll: a job sent as the Receive is cancelled stayed in flight, invisible,
// until its lease ran out (the JetStream adapter lost jobs this way).
func TestCancelledReceiveLosesNoMessage(t *testing.T) {
	t.Parallel()
	c, tr := client(t, 3)
	q := newQueue(t, c, time.Minute)
	type result struct {
		ds  []*queue.Delivery
		err error
	}
	for range 20 {
		polls := tr.callsOf("ReceiveMessage")
		ctx, cancel := context.WithCancel(t.Context())
		received := make(chan result, 1)
		go func() {
			ds, err := q.Receive(ctx, 1)
			received <- result{ds, err}
		}()
		require.Eventually(t, func() bool { return tr.callsOf("ReceiveMessage") > polls }, 30*time.Second, time.Millisecond)
		msg := message()
		enqueued := make(chan error, 1)
		go func() { enqueued <- q.Enqueue(t.Context(), msg) }()
		require.NoError(t, <-enqueued)
		cancel()
		got := <-received // the job, if it came before the cancel
		if got.err != nil {
			require.ErrorIs(t, got.err, context.Canceled)
			got.ds = []*queue.Delivery{receiveOne(t, q)}
		}
		require.Len(t, got.ds, 1)
		require.Equal(t, msg, got.ds[0].Msg)
		require.NoError(t, got.ds[0].Ack(t.Context()))
	}
}

// An existing queue whose redrive backstop is below Config.MaxReceiveCount
// (made by an earlier version, for fewer deliveries than the workers now
// allow on an outage) has it raised: SQS would otherwise park a job in the
// dead-letter queue before the workers give up on it and mark it failed.
// A higher one is kept.
func TestNewRaisesAnExistingQueuesRedrive(t *testing.T) {
	t.Parallel()
	c, _ := client(t, 3)
	q := newQueueWith(t, apsqs.Config{Client: c, MaxReceiveCount: 10})
	name := q.URL()[strings.LastIndex(q.URL(), "/")+1:]
	maxReceives := func() string {
		t.Helper()
		out, err := c.GetQueueAttributes(t.Context(), &awssqs.GetQueueAttributesInput{
			QueueUrl: aws.String(q.URL()), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
		})
		require.NoError(t, err)
		var redrive struct {
			DeadLetterTargetArn string `json:"deadLetterTargetArn"`
			MaxReceiveCount     any    `json:"maxReceiveCount"`
		}
		require.NoError(t, json.Unmarshal([]byte(out.Attributes["RedrivePolicy"]), &redrive))
		require.True(t, strings.HasSuffix(redrive.DeadLetterTargetArn, name+"-dlq"), redrive.DeadLetterTargetArn)
		return fmt.Sprint(redrive.MaxReceiveCount)
	}
	require.Equal(t, "10", maxReceives())

	_, err := apsqs.New(t.Context(), apsqs.Config{Client: c, Queue: name, MaxReceiveCount: 27, WaitTime: time.Second})
	require.NoError(t, err)
	require.Equal(t, "27", maxReceives(), "raised to what the workers need")

	_, err = apsqs.New(t.Context(), apsqs.Config{Client: c, Queue: name, MaxReceiveCount: 12, WaitTime: time.Second})
	require.NoError(t, err)
	require.Equal(t, "27", maxReceives(), "never lowered")
}
