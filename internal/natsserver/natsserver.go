// Package natsserver runs an in-process nats-server with JetStream: the
// embedded default of `apiary serve` and the per-test server of every NATS
// test.
package natsserver

import (
	"errors"
	"fmt"
	"net/url"
	"os"
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
	// Name names the server; default "apiary-embedded". Servers of one
	// cluster need distinct names.
	Name string
	// Cluster, when its Name is set, joins this server to a JetStream
	// cluster (tests run three in one process to exercise replicas).
	Cluster Cluster
}

// Cluster is the route configuration of a clustered server.
type Cluster struct {
	Name   string   // cluster name, the same on every node
	Port   int      // route listen port on Host
	Routes []string // nats-route://host:port of every node
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
	if cfg.Name == "" {
		cfg.Name = "apiary-embedded"
	}
	opts := &server.Options{
		ServerName:         cfg.Name,
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		SyncAlways:         cfg.SyncAlways,
		NoSigs:             true,
		NoLog:              os.Getenv("APIARY_NATS_DEBUG") == "",
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
	}
	if cfg.Cluster.Name != "" {
		opts.Cluster = server.ClusterOpts{Name: cfg.Cluster.Name, Host: cfg.Host, Port: cfg.Cluster.Port}
		for _, r := range cfg.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("natsserver: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: new: %w", err)
	}
	if !opts.NoLog {
		srv.ConfigureLogger()
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
