// Command go-peer is the Go peer of `make bench`: shippy's ShippingService
// (GetConsignments and CreateConsignment) in grpc-go and pgx, doing the
// per-request work consignment-service does, on the same tables, so the
// benchmark can hold the Rust service against it. It is built offline from
// Debian's Go packages by `cargo dev bench` (shippy-dev/src/cluster/go_peer.rs).
//
// Per request it does what consignment-service does: the same token checks
// with user-service's keys and the same cache of verified tokens, the same
// validation and messages, the same SQL text (prepared, pgx's statement
// cache), the same saga against vessel-service (Reserve, insert pending,
// Confirm, mark confirmed; Release on failure) with the same deadline,
// retries and x-service-token, and the same answers and status codes; page
// tokens are interchangeable with the Rust service's.
//
// Where it differs from consignment-service (app.rs, and what
// shippy-service's GrpcServer wraps around every call):
//   - GetConsignments is one query per call in both (LIMIT page size + 1,
//     rows read as they arrive, the read stopped once the page is full).
//     Rows are checked as they are read, so a bad row past where a page
//     ends is not seen here; consignment-service alike.
//   - pgx hands out and takes back pooled connections without a round trip;
//     sqlx (0.9) sends a Sync and waits for the answer each time a
//     connection goes back to the pool (not configurable), so every query of
//     the Rust service costs one more, small, round trip to PostgreSQL.
//     (shippy-store turns off the other one, sqlx's ping before each use.)
//   - No tracing: no spans, no OTLP export, no traceparent sent to
//     vessel-service. Logs only failures, to stderr; the Rust service also
//     logs every refused request and every created consignment (info).
//   - No metrics endpoint, no Consul registration or discovery (static
//     addresses or dns:///), no grpc.health.v1, no reflection.
//   - No load shedding (GrpcServer refuses requests past 256 at once with
//     RESOURCE_EXHAUSTED), no 30 s server-side request timeout, no circuit
//     breaker in front of vessel-service. HTTP/2 settings are grpc-go's
//     defaults, not hyper's (flow-control windows, frame sizes).
//   - A request past the decoding limit (2 MiB + 64 KiB) is refused by
//     grpc-go with RESOURCE_EXHAUSTED; tonic answers OUT_OF_RANGE.
//   - No readiness gate: the database and the keys are waited for before
//     the port opens, instead of answering UNAVAILABLE meanwhile. No
//     migrations: the table must exist (consignment-service creates it).
//   - Token keys are fetched once, at start; a token with an unknown kid
//     does not make the peer fetch them again. The cache of verified
//     tokens, when full (100 000), drops what is stale, then everything;
//     moka evicts by frequency instead.
//   - No recovery sweep: a consignment a failed create leaves pending or
//     cancelling stays so until consignment-service's sweep settles it.
//   - CancelConsignment answers UNIMPLEMENTED.
//   - PostgreSQL only (consignment-service also runs on MongoDB).
//
// Configuration, from the environment: LISTEN_ADDR (127.0.0.1:0),
// DATABASE_URL (postgres://…), USER_SERVICE_URL and VESSEL_SERVICE_URL
// (http://host:port or dns:///host:port), SERVICE_TOKEN,
// DATABASE_MAX_CONNECTIONS (10, sqlx's pool size in shippy-store). Once the
// keys are fetched it prints one line, `listening on HOST:PORT`, to stdout.
package main

import (
	"context"
	"fmt"
	"log"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	consignmentpb "shippygen/consignment/v1"
	userpb "shippygen/user/v1"
	vesselpb "shippygen/vessel/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
)

const (
	// defaultMaxConnections is shippy-store's pool size.
	defaultMaxConnections = 10
	// connectTimeout and requestTimeout are app.rs's CALLS.
	connectTimeout = time.Second
	requestTimeout = 3 * time.Second
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix("go-peer: ")
	rand.Seed(time.Now().UnixNano())
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	listen := env("LISTEN_ADDR", "127.0.0.1:0")
	databaseURL := os.Getenv("DATABASE_URL")
	if databaseURL == "" {
		return fmt.Errorf("DATABASE_URL is required (postgres://user:password@host:5432/db)")
	}
	userAddr, err := grpcTarget("USER_SERVICE_URL", env("USER_SERVICE_URL", "http://127.0.0.1:50053"))
	if err != nil {
		return err
	}
	vesselAddr, err := grpcTarget("VESSEL_SERVICE_URL", env("VESSEL_SERVICE_URL", "http://127.0.0.1:50052"))
	if err != nil {
		return err
	}
	token, err := serviceToken(os.Getenv("SERVICE_TOKEN"))
	if err != nil {
		return err
	}
	if token == "" {
		log.Print("no SERVICE_TOKEN: vessel-service will refuse every reservation, so no consignment can be placed")
	}
	maxConns, err := strconv.ParseInt(env("DATABASE_MAX_CONNECTIONS", strconv.Itoa(defaultMaxConnections)), 10, 32)
	if err != nil || maxConns < 1 {
		return fmt.Errorf("DATABASE_MAX_CONNECTIONS must be a whole number of at least 1")
	}

	store, err := connectStore(ctx, databaseURL, int32(maxConns))
	if err != nil {
		return err
	}
	defer store.pool.Close()
	userConn, err := dial(userAddr)
	if err != nil {
		return err
	}
	defer userConn.Close()
	vesselConn, err := dial(vesselAddr)
	if err != nil {
		return err
	}
	defer vesselConn.Close()
	keys := fetchKeys(ctx, userpb.NewUserServiceClient(userConn))
	if keys == nil {
		return ctx.Err()
	}
	log.Printf("%d token keys fetched from user-service", len(keys))

	listener, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", listen, err)
	}
	server := grpc.NewServer(
		// tonic's max_decoding_message_size on ShippingServiceServer.
		grpc.MaxRecvMsgSize(maxRequestBytes),
		// GrpcServer's http2_keepalive_interval (and hyper's 20 s timeout).
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
	)
	consignmentpb.RegisterShippingServiceServer(server, &shippingAPI{
		store:   store,
		auth:    &authenticator{keys: keys, verified: newVerifiedTokens()},
		vessels: &vessels{client: vesselpb.NewVesselServiceClient(vesselConn), token: token},
	})
	fmt.Printf("listening on %s\n", listener.Addr())
	go func() {
		<-ctx.Done()
		server.GracefulStop()
	}()
	return server.Serve(listener)
}

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

// grpcTarget is a grpc-go target for a service URL: http://host:port
// becomes host:port; dns:///name:port stays as it is.
func grpcTarget(name, url string) (string, error) {
	switch {
	case strings.HasPrefix(url, "http://"):
		target := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
		if target != "" && !strings.Contains(target, "/") {
			return target, nil
		}
	case strings.HasPrefix(url, "dns:///"):
		return url, nil
	}
	return "", fmt.Errorf("%s %q is not an address the peer can use: http://host:port or dns:///host:port", name, url)
}

// serviceToken checks SERVICE_TOKEN as shippy-auth's ServiceToken does.
func serviceToken(secret string) (string, error) {
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return "", nil
	}
	valid := len(secret) >= 32 && len(secret) <= 1024
	for i := 0; i < len(secret) && valid; i++ {
		valid = secret[i] > ' ' && secret[i] < 127
	}
	if !valid {
		return "", fmt.Errorf("SERVICE_TOKEN must be 32 to 1024 printable ASCII characters " +
			"without spaces (e.g. `openssl rand -hex 32`)")
	}
	return secret, nil
}

// dial is a lazily connecting channel, as tonic's connect_lazy.
func dial(target string) (*grpc.ClientConn, error) {
	return grpc.Dial(target,
		grpc.WithInsecure(),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.DefaultConfig,
			MinConnectTimeout: connectTimeout,
		}))
}

// retry calls attempt, each try given requestTimeout, until it succeeds or
// ctx ends, pausing as shippy-service's Backoff::default() does (200 ms
// doubling to 5 s, jittered).
func retry(ctx context.Context, what string, attempt func(context.Context) error) {
	pause, max := 200*time.Millisecond, 5*time.Second
	for {
		try, cancel := context.WithTimeout(ctx, requestTimeout)
		err := attempt(try)
		cancel()
		if err == nil {
			return
		}
		jittered := pause + time.Duration(rand.Int63n(int64(pause)))
		log.Printf("%s is not ready yet; retrying in %v: %v", what, jittered.Round(time.Millisecond), err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jittered):
		}
		if pause *= 2; pause > max {
			pause = max
		}
	}
}
