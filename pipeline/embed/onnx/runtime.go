//go:build cgo

package onnx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// The ONNX Runtime environment is one per process: loaded by the first
// Embedder, shared by every later one (whatever its model), never unloaded.
var (
	envMu   sync.Mutex
	envPath string // the library loaded; "" until one is
)

// initRuntime loads the runtime library at path unless one is loaded. A
// failure leaves nothing loaded, so a later call (after `apiary models
// pull`) may succeed.
func initRuntime(path string) error {
	envMu.Lock()
	defer envMu.Unlock()
	if envPath != "" {
		return nil
	}
	ort.SetSharedLibraryPath(path)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("onnx: load runtime %s: %w", path, err)
	}
	envPath = path
	return nil
}

// Input and output names of the BERT-family models of the table.
const (
	inputIDs      = "input_ids"
	attentionMask = "attention_mask"
	tokenTypeIDs  = "token_type_ids"
	hiddenState   = "last_hidden_state"
)

// ortSession runs one model. ORT documents Session::Run as safe for
// concurrent calls; the Embedder runs one batch at a time anyway.
type ortSession struct {
	s      *ort.DynamicAdvancedSession
	inputs []string // the model's inputs, in the order Run takes them
	dim    int
}

// openSession loads the runtime at runtimePath (once per process) and the
// model at modelPath, and checks that the model takes token ids and an
// attention mask (and token type ids, if it has that input) as int64 and
// gives a last hidden state of width dim.
func openSession(runtimePath, modelPath string, dim, threads int) (session, error) {
	if err := initRuntime(runtimePath); err != nil {
		return nil, err
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	// The runtime's threads spin between batches by default, burning the
	// cores that the rest of the process (HTTP, queue, sealing, storage)
	// needs while the next batch is being gathered.
	if err := opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithOptions(modelPath, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx: read model %s: %w", modelPath, err)
	}
	var inputs []string
	for _, in := range ins {
		if !slices.Contains([]string{inputIDs, attentionMask, tokenTypeIDs}, in.Name) ||
			in.DataType != ort.TensorElementDataTypeInt64 || len(in.Dimensions) != 2 {
			return nil, fmt.Errorf("onnx: model %s: unexpected input %s", modelPath, in.String())
		}
		inputs = append(inputs, in.Name)
	}
	if !slices.Contains(inputs, inputIDs) || !slices.Contains(inputs, attentionMask) {
		return nil, fmt.Errorf("onnx: model %s: inputs %v lack %s or %s", modelPath, inputs, inputIDs, attentionMask)
	}
	i := slices.IndexFunc(outs, func(o ort.InputOutputInfo) bool { return o.Name == hiddenState })
	if i < 0 {
		return nil, fmt.Errorf("onnx: model %s: no output %s", modelPath, hiddenState)
	}
	if o := outs[i]; o.DataType != ort.TensorElementDataTypeFloat || len(o.Dimensions) != 3 || o.Dimensions[2] != int64(dim) {
		return nil, fmt.Errorf("onnx: model %s: output %s, want [batch, seq, %d] float", modelPath, o.String(), dim)
	}
	s, err := ort.NewDynamicAdvancedSession(modelPath, inputs, []string{hiddenState}, opts)
	if err != nil {
		return nil, fmt.Errorf("onnx: open model %s: %w", modelPath, err)
	}
	return &ortSession{s: s, inputs: inputs, dim: dim}, nil
}

// run returns the last hidden state of b, [b.n, b.seqLen, dim] flattened.
// Canceling ctx stops a run in progress.
func (s *ortSession) run(ctx context.Context, b *batch) (_ []float32, err error) {
	shape := ort.NewShape(int64(b.n), int64(b.seqLen))
	values := make([]ort.Value, 0, len(s.inputs)+1)
	defer func() {
		for _, v := range values {
			err = errors.Join(err, v.Destroy())
		}
	}()
	for _, name := range s.inputs {
		data := b.ids
		switch name {
		case attentionMask:
			data = b.mask
		case tokenTypeIDs:
			data = b.types
		}
		t, err := ort.NewTensor(shape, data)
		if err != nil {
			return nil, fmt.Errorf("onnx: input %s: %w", name, err)
		}
		values = append(values, t)
	}
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(b.n), int64(b.seqLen), int64(s.dim)))
	if err != nil {
		return nil, fmt.Errorf("onnx: output: %w", err)
	}
	values = append(values, out)

	opts, err := ort.NewRunOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: run options: %w", err)
	}
	defer opts.Destroy()
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		_ = opts.Terminate()
	})
	err = s.s.RunWithOptions(values[:len(s.inputs)], []ort.Value{out}, opts)
	if !stop() {
		<-terminated // Terminate has returned: opts may be destroyed
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("onnx: run: %w", context.Cause(ctx))
		}
		return nil, fmt.Errorf("onnx: run: %w", err)
	}
	// The tensor's data is Go memory: it outlives the tensor's Destroy.
	return out.GetData(), nil
}

func (s *ortSession) close() error {
	return s.s.Destroy()
}
