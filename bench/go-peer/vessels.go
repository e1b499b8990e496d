package main

// vessel-service as consignment-service's vessels.rs calls it: each call
// with a 2 s deadline (retries included) and the shared x-service-token;
// retried while vessel-service is UNAVAILABLE, at most 3 tries, with
// jittered pauses. Unlike vessels.rs there is no circuit breaker.

import (
	"context"
	"errors"
	"math/rand"
	"time"

	vesselpb "shippygen/vessel/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	// vesselDeadline is app.rs's VESSEL_DEADLINE.
	vesselDeadline = 2 * time.Second
	// vesselAttempts is how many times an unreachable vessel-service is
	// tried in one call.
	vesselAttempts = 3
	pauseMin       = 50 * time.Millisecond
	pauseMax       = 400 * time.Millisecond
	// serviceTokenKey is the metadata key of the services' shared secret.
	serviceTokenKey = "x-service-token"
)

type vessels struct {
	client vesselpb.VesselServiceClient
	token  string
}

// call sends with send until it is answered, is refused for a reason
// other than being unreachable, or the deadline passes.
func (v *vessels) call(ctx context.Context, send func(context.Context) error) error {
	deadline := time.Now().Add(vesselDeadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if v.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, serviceTokenKey, v.token)
	}
	pause := pauseMin
	for attempt := 1; ; attempt++ {
		err := send(ctx)
		if status.Code(err) != codes.Unavailable || attempt >= vesselAttempts {
			return err
		}
		// backon's jitter: longer by a random part of itself.
		jittered := pause + time.Duration(rand.Int63n(int64(pause)))
		if pause *= 2; pause > pauseMax {
			pause = pauseMax
		}
		if !time.Now().Add(jittered).Before(deadline) {
			return err
		}
		timer := time.NewTimer(jittered)
		select {
		case <-ctx.Done():
			timer.Stop()
			return status.FromContextError(ctx.Err()).Err()
		case <-timer.C:
		}
	}
}

// unexpected is vessel-service's answer as this service's error:
// unreachable or slow is UNAVAILABLE, anything else INTERNAL.
func unexpected(err error) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return unavailable("vessel-service is unreachable; retry shortly", err)
	default:
		return internal(err)
	}
}

// reserve takes room for capacity containers weighing weight kg on the
// smallest vessel that has it, held for id on owner's account; answers the
// vessel's id.
func (v *vessels) reserve(ctx context.Context, id, owner string, capacity, weight int32) (string, error) {
	var reservation *vesselpb.Reservation
	err := v.call(ctx, func(ctx context.Context) (err error) {
		reservation, err = v.client.Reserve(ctx, &vesselpb.ReserveRequest{
			ReservationId: id,
			Specification: &vesselpb.Specification{Capacity: capacity, MaxWeight: weight},
			OwnerId:       owner,
		})
		return err
	})
	if status.Code(err) == codes.FailedPrecondition {
		return "", status.Errorf(codes.FailedPrecondition,
			"no vessel has room left for this consignment (%d containers, %d kg)", capacity, weight)
	}
	if err != nil {
		return "", unexpected(err)
	}
	if reservation.VesselId == "" {
		return "", internal(errors.New("vessel-service reserved without naming a vessel"))
	}
	return reservation.VesselId, nil
}

// confirm keeps id's held room until it is released. vessels.rs tells a
// lost hold (NOT_FOUND) from no answer for its recovery sweep; placing a
// consignment treats both alike, so here they are just their errors.
func (v *vessels) confirm(ctx context.Context, id string) error {
	err := v.call(ctx, func(ctx context.Context) error {
		_, err := v.client.Confirm(ctx, &vesselpb.ReservationRef{ReservationId: id})
		return err
	})
	switch {
	case err == nil:
		return nil
	case status.Code(err) == codes.NotFound:
		return unavailable("the vessel's room for this consignment was not held long enough to "+
			"confirm it; nothing was shipped; retry", err)
	default:
		return unexpected(err)
	}
}

// release gives id's room back (only if still held, with onlyIfHeld);
// answers whether there was any.
func (v *vessels) release(ctx context.Context, id string, onlyIfHeld bool) (bool, error) {
	var released *vesselpb.ReleaseResponse
	err := v.call(ctx, func(ctx context.Context) (err error) {
		released, err = v.client.Release(ctx, &vesselpb.ReleaseRequest{
			ReservationId: id,
			OnlyIfHeld:    onlyIfHeld,
		})
		return err
	})
	if err != nil {
		return false, unexpected(err)
	}
	return released.Released, nil
}
