//go:build !cgo

package onnx

import "github.com/apiaryhq/apiary"

// openSession fails: ONNX Runtime is loaded through cgo, and this binary was
// built without it.
func openSession(runtimePath, modelPath string, dim, threads int) (session, error) {
	return nil, apiary.E(apiary.KindUnavailable, "onnx: this binary was built without cgo (CGO_ENABLED=0): it cannot load ONNX Runtime")
}
