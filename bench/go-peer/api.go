package main

// The ShippingService handlers (consignment-service's api.rs) and placing a
// consignment (saga.rs's place).

import (
	"context"
	"log"
	"time"

	consignmentpb "shippygen/consignment/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	defaultPageSize = 50
	maxPageSize     = 100
	// pageBytes is the most encoded bytes of consignments in one page.
	pageBytes = 3 * 1024 * 1024
)

type shippingAPI struct {
	consignmentpb.UnimplementedShippingServiceServer
	store   *store
	auth    *authenticator
	vessels *vessels
}

func (a *shippingAPI) GetConsignments(ctx context.Context, request *consignmentpb.GetRequest) (*consignmentpb.Response, error) {
	caller, err := a.auth.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	after, err := decodeToken(request.PageToken)
	if err != nil {
		return nil, err
	}
	size := int(pageSize(request.PageSize, defaultPageSize, maxPageSize))
	var page []*consignmentpb.Consignment
	var last cursor
	bytes, more := 0, false
	// One more than a page tells whether another follows.
	err = a.store.listByOwner(ctx, caller.Sub, after, int64(size)+1, func(c *consignment) bool {
		if len(page) == size {
			more = true
			return false
		}
		encoded := c.proto()
		// The repeated field's tag and length prefix included.
		length := proto.Size(encoded) + 16
		if len(page) > 0 && bytes+length > pageBytes {
			more = true
			return false
		}
		bytes += length
		page = append(page, encoded)
		last = cursor{createdAt: c.CreatedAt, id: c.ID}
		return true
	})
	if err != nil {
		return nil, apiError(ctx, err)
	}
	next := ""
	if more && len(page) > 0 {
		next = encodeToken(last)
	}
	return &consignmentpb.Response{Consignments: page, NextPageToken: next}, nil
}

func (a *shippingAPI) CreateConsignment(ctx context.Context, request *consignmentpb.Consignment) (*consignmentpb.Response, error) {
	caller, err := a.auth.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	dropUnknownFields(request)
	if encoded := proto.Size(request); encoded > maxConsignmentBytes {
		return nil, status.Errorf(codes.InvalidArgument,
			"a consignment may be at most %d bytes encoded (%d MiB); this one is %d",
			maxConsignmentBytes, maxConsignmentBytes/(1024*1024), encoded)
	}
	c, err := parseNewConsignment(request, caller.Sub)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	c.ID = newUUID()
	c.OwnerID = caller.Sub
	// Both stores keep microseconds; so does the answer.
	c.CreatedAt = time.Now().UTC().Truncate(time.Microsecond)
	c.State = statePending
	if err := a.place(ctx, c, int32(len(c.Containers))); err != nil {
		return nil, err
	}
	return &consignmentpb.Response{Created: true, Consignment: c.proto()}, nil
}

func (a *shippingAPI) CancelConsignment(context.Context, *consignmentpb.CancelRequest) (*consignmentpb.Response, error) {
	return nil, status.Error(codes.Unimplemented,
		"the benchmark peer serves GetConsignments and CreateConsignment")
}

// dropUnknownFields drops what prost drops when it decodes, so the size
// checked is the size the Rust service checks.
func dropUnknownFields(c *consignmentpb.Consignment) {
	c.ProtoReflect().SetUnknown(nil)
	for _, x := range c.Containers {
		x.ProtoReflect().SetUnknown(nil)
	}
	if c.CreatedAt != nil {
		c.CreatedAt.ProtoReflect().SetUnknown(nil)
	}
}

// place reserves room for c, stores it pending, confirms the room and
// marks it confirmed (saga.rs's place); on success c is as stored.
func (a *shippingAPI) place(ctx context.Context, c *consignment, capacity int32) error {
	vessel, err := a.vessels.reserve(ctx, c.ID, c.OwnerID, capacity, c.Weight)
	if err != nil {
		return err
	}
	c.VesselID = vessel
	c.State = statePending
	if err := a.store.insert(ctx, c); err != nil {
		// Nothing stored uses the room, unless the insert landed after all
		// and a sweep confirmed it: only a hold is given back.
		if _, release := a.vessels.release(ctx, c.ID, true); release != nil {
			log.Printf("room not given back; it returns when its hold expires: %v", release)
		}
		return apiError(ctx, err)
	}
	if cause := a.vessels.confirm(ctx, c.ID); cause != nil {
		return a.undo(ctx, c, cause)
	}
	moved, err := a.store.transition(ctx, c.ID, statePending, stateConfirmed)
	switch {
	case err != nil:
		// Room confirmed and consignment stored: it ships; consignment-
		// service's recovery sweep marks it confirmed (the peer has none).
		log.Printf("consignment confirmed but not yet marked: %v", err)
	case !moved:
		return a.settledElsewhere(ctx, c, status.Error(codes.Unavailable,
			"the vessel's room for this consignment was lost; nothing was shipped; retry"))
	}
	c.State = stateConfirmed
	return nil
}

// undo takes a stored, pending consignment whose room could not be
// confirmed out of the way and gives its room back, then answers cause.
func (a *shippingAPI) undo(ctx context.Context, c *consignment, cause error) error {
	moved, err := a.store.transition(ctx, c.ID, statePending, stateCancelling)
	switch {
	case err != nil:
		log.Printf("consignment left pending; the recovery sweep settles it: %v", err)
	case moved:
		a.finishCancel(ctx, c.ID)
	default:
		return a.settledElsewhere(ctx, c, cause)
	}
	return cause
}

// settledElsewhere answers c if it is confirmed in the store after all,
// else cause.
func (a *shippingAPI) settledElsewhere(ctx context.Context, c *consignment, cause error) error {
	stored, err := a.store.get(ctx, c.ID)
	if err == nil && stored != nil && stored.State == stateConfirmed {
		c.State = stateConfirmed
		return nil
	}
	return cause
}

// finishCancel gives a cancelling consignment's room back and marks it
// cancelled.
func (a *shippingAPI) finishCancel(ctx context.Context, id string) {
	if _, err := a.vessels.release(ctx, id, false); err != nil {
		log.Printf("room not given back yet; the recovery sweep retries: %v", err)
		return
	}
	if _, err := a.store.transition(ctx, id, stateCancelling, stateCancelled); err != nil {
		log.Printf("room given back but consignment not marked cancelled yet: %v", err)
	}
}
