package main

// The consignments table, with the SQL text of consignment-service's
// store/postgres.rs. The schema is consignment-service's: the peer never
// migrates, it expects the table to be there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// storeTimeout is how long a query waits for a connection (app.rs's
// STORE_TIMEOUT, sqlx's acquire_timeout).
const storeTimeout = 3 * time.Second

const (
	columns = "id, owner_id, description, weight, vessel_id, containers, created_at, state"

	sqlList = "SELECT " + columns + " FROM consignments WHERE owner_id = $1 AND state = 'confirmed' " +
		"ORDER BY created_at DESC, id DESC LIMIT $2"
	sqlListAfter = "SELECT " + columns + " FROM consignments WHERE owner_id = $1 AND state = 'confirmed' " +
		"AND (created_at, id) < ($2, $3) " +
		"ORDER BY created_at DESC, id DESC LIMIT $4"
	sqlGet    = "SELECT " + columns + " FROM consignments WHERE id = $1"
	sqlInsert = "INSERT INTO consignments " +
		"(id, owner_id, description, weight, vessel_id, containers, created_at, state) " +
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
	sqlTransition = "UPDATE consignments SET state = $3 WHERE id = $1 AND state = $2"
)

// cannotConnectNow is PostgreSQL's cannot_connect_now (starting up or
// shutting down).
const cannotConnectNow = "57P03"

type store struct {
	pool *pgxpool.Pool
}

// storeErrorKind tells apart what StoreError does in the Rust store.
type storeErrorKind int

const (
	storeDatabase storeErrorKind = iota
	storeUnavailable
	storeCorrupt
	storeAlreadyExists
)

type storeError struct {
	kind storeErrorKind
	err  error
}

func (e *storeError) Error() string { return e.err.Error() }

func (e *storeError) Unwrap() error { return e.err }

// classify sorts a pgx error as shippy_store::postgres_unavailable does.
func classify(err error) error {
	var pgErr *pgconn.PgError
	var netErr net.Error
	switch {
	case errors.As(err, &pgErr):
		if pgErr.Code == cannotConnectNow {
			return &storeError{storeUnavailable, err}
		}
		return &storeError{storeDatabase, err}
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), pgconn.SafeToRetry(err):
		return &storeError{storeUnavailable, err}
	default:
		return &storeError{storeDatabase, err}
	}
}

// apiError is the answer for a store error (api.rs's From<StoreError>),
// or for the caller's own cancellation.
func apiError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	var stored *storeError
	if errors.As(err, &stored) && stored.kind == storeUnavailable {
		return unavailable("the consignment database is unreachable; retry shortly", err)
	}
	return internal(err)
}

// acquire is a connection, waited for at most storeTimeout.
func (s *store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	waiting, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	conn, err := s.pool.Acquire(waiting)
	if err != nil {
		return nil, classify(err)
	}
	return conn, nil
}

// scanConsignment reads one row and checks it as the Rust store does
// (TryFrom<ConsignmentRow>): a row it cannot read is corrupt.
func scanConsignment(row pgx.Row) (*consignment, error) {
	var c consignment
	var containers []byte
	if err := row.Scan(&c.ID, &c.OwnerID, &c.Description, &c.Weight, &c.VesselID,
		&containers, &c.CreatedAt, &c.State); err != nil {
		return nil, err
	}
	corrupt := func(err error) error {
		return &storeError{storeCorrupt, fmt.Errorf("stored consignment is invalid: consignment `%s`: %w", c.ID, err)}
	}
	if c.State != statePending && c.State != stateConfirmed && c.State != stateCancelling && c.State != stateCancelled {
		return nil, corrupt(invalidInput("unknown state"))
	}
	var err error
	if c.Description, err = parseDescription(c.Description); err != nil {
		return nil, corrupt(err)
	}
	if err := parseWeight(c.Weight); err != nil {
		return nil, corrupt(err)
	}
	stored, err := decodeContainers(containers)
	if err != nil {
		return nil, &storeError{storeCorrupt, err}
	}
	if c.Containers, err = parseContainers(stored); err != nil {
		return nil, corrupt(err)
	}
	return &c, nil
}

// storedContainer is a container as serde reads one: every field there,
// as text.
type storedContainer struct {
	ID         *string `json:"id"`
	CustomerID *string `json:"customer_id"`
	Origin     *string `json:"origin"`
	UserID     *string `json:"user_id"`
}

func decodeContainers(raw []byte) ([]container, error) {
	var stored []storedContainer
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, err
	}
	if stored == nil {
		return nil, errors.New("containers: invalid type: null, expected a sequence")
	}
	containers := make([]container, len(stored))
	for i, x := range stored {
		if x.ID == nil || x.CustomerID == nil || x.Origin == nil || x.UserID == nil {
			return nil, fmt.Errorf("containers: container %d lacks a field", i+1)
		}
		containers[i] = container{ID: *x.ID, CustomerID: *x.CustomerID, Origin: *x.Origin, UserID: *x.UserID}
	}
	return containers, nil
}

// encodeContainers is the JSON serde writes for the containers (the same
// field names, in the same order).
func encodeContainers(containers []container) (string, error) {
	var b strings.Builder
	encoder := json.NewEncoder(&b)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(containers); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// listByOwner hands owner's confirmed consignments, newest first, after
// after, at most limit, one at a time to each until it answers false: one
// query, its rows read as they arrive.
func (s *store) listByOwner(ctx context.Context, owner string, after *cursor, limit int64,
	each func(*consignment) bool) error {
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var rows pgx.Rows
	if after == nil {
		rows, err = conn.Query(ctx, sqlList, owner, limit)
	} else {
		rows, err = conn.Query(ctx, sqlListAfter, owner, after.createdAt, after.id, limit)
	}
	if err != nil {
		return classify(err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanConsignment(rows)
		if err != nil {
			var stored *storeError
			if errors.As(err, &stored) {
				return err
			}
			return &storeError{storeCorrupt, err}
		}
		if !each(c) {
			break
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return classify(err)
	}
	return nil
}

// get is the consignment with this id, whatever its state; nil if none.
func (s *store) get(ctx context.Context, id string) (*consignment, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	c, err := scanConsignment(conn.QueryRow(ctx, sqlGet, id))
	var stored *storeError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case errors.As(err, &stored):
		return nil, err
	case err != nil:
		return nil, classify(err)
	}
	return c, nil
}

// insert adds c in its state; an id already taken is an error.
func (s *store) insert(ctx context.Context, c *consignment) error {
	containers, err := encodeContainers(c.Containers)
	if err != nil {
		return &storeError{storeDatabase, err}
	}
	conn, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tag, err := conn.Exec(ctx, sqlInsert, c.ID, c.OwnerID, c.Description, c.Weight, c.VesselID,
		containers, c.CreatedAt, c.State)
	if err != nil {
		return classify(err)
	}
	if tag.RowsAffected() == 0 {
		return &storeError{storeAlreadyExists, fmt.Errorf("a consignment with id `%s` exists already", c.ID)}
	}
	return nil
}

// transition moves consignment id from state from to to; says whether it
// did.
func (s *store) transition(ctx context.Context, id, from, to string) (bool, error) {
	conn, err := s.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	tag, err := conn.Exec(ctx, sqlTransition, id, from, to)
	if err != nil {
		return false, classify(err)
	}
	return tag.RowsAffected() == 1, nil
}

// connectStore opens a pool of at most maxConns connections, sized and
// aged as sqlx's defaults are, waiting until the database answers.
func connectStore(ctx context.Context, url string, maxConns int32) (*store, error) {
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL is not a valid PostgreSQL URL: %w", err)
	}
	config.MaxConns = maxConns
	config.MinConns = 0
	config.MaxConnLifetime = 30 * time.Minute
	config.MaxConnIdleTime = 10 * time.Minute
	var pool *pgxpool.Pool
	retry(ctx, "the consignment database", func(ctx context.Context) error {
		pool, err = pgxpool.ConnectConfig(ctx, config)
		return err
	})
	if pool == nil {
		return nil, ctx.Err()
	}
	return &store{pool: pool}, nil
}

// unavailable is UNAVAILABLE with message; the cause is logged.
func unavailable(message string, cause error) error {
	log.Printf("%s: %v", message, cause)
	return status.Error(codes.Unavailable, message)
}

// internal is INTERNAL; the cause is logged, not sent.
func internal(cause error) error {
	log.Printf("request failed: %v", cause)
	return status.Error(codes.Internal, "internal error; the service logged the details")
}
