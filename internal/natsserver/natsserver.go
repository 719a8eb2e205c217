// Package natsserver runs an in-process nats-server with JetStream: the
// embedded default of `apiary serve` and the per-test server of every NATS
// test.
package natsserver

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an embedded server.
type Config struct {
	// StoreDir is where JetStream keeps its streams. Required.
	StoreDir string
	// Host defaults to 127.0.0.1.
	Host string
	// Port defaults to -1: a free port, chosen by the server.
	Port int
	// SyncAlways makes JetStream fsync every write before acknowledging it,
	// so an acknowledged message survives a crash. Default true in serve.
	SyncAlways bool
	// ReadyTimeout bounds start-up; default 15 s.
	ReadyTimeout time.Duration
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
}

// Start runs a nats-server with JetStream and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("natsserver: StoreDir is required")
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 15 * time.Second
	}
	opts := &server.Options{
		ServerName:         "apiary-embedded",
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              true,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready after %s", cfg.ReadyTimeout)
	}
	return &Server{srv: srv}, nil
}

// URL is the client URL, e.g. nats://127.0.0.1:4222.
func (s *Server) URL() string { return s.srv.ClientURL() }

// Shutdown stops the server and waits for it to finish.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}
