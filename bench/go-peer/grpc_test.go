package main

import (
	"context"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	consignmentpb "shippygen/consignment/v1"
	vesselpb "shippygen/vessel/v1"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestMain keeps the failures the tests provoke out of the output unless -v.
func TestMain(m *testing.M) {
	flag.Parse()
	if !testing.Verbose() {
		log.SetOutput(io.Discard)
	}
	os.Exit(m.Run())
}

// fakeVessels answers Reserve with the errors queued in fail, then a
// reservation on "v1"; it records what it was sent.
type fakeVessels struct {
	vesselpb.UnimplementedVesselServiceServer
	mu       sync.Mutex
	fail     []codes.Code
	vessel   string
	calls    int
	tokens   []string
	deadline time.Duration
	request  *vesselpb.ReserveRequest
}

func (f *fakeVessels) Reserve(ctx context.Context, request *vesselpb.ReserveRequest) (*vesselpb.Reservation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	md, _ := metadata.FromIncomingContext(ctx)
	f.tokens = append(f.tokens, md.Get(serviceTokenKey)...)
	if deadline, ok := ctx.Deadline(); ok {
		f.deadline = time.Until(deadline)
	}
	f.request = request
	if len(f.fail) > 0 {
		code := f.fail[0]
		f.fail = f.fail[1:]
		return nil, status.Error(code, "no")
	}
	return &vesselpb.Reservation{ReservationId: request.ReservationId, VesselId: f.vessel}, nil
}

func (f *fakeVessels) Confirm(context.Context, *vesselpb.ReservationRef) (*vesselpb.Reservation, error) {
	return nil, status.Error(codes.NotFound, "nothing held")
}

func serve(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer(grpc.MaxRecvMsgSize(maxRequestBytes))
	register(server)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	conn, err := dial(listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestVesselCallsCarryTheTokenAndDeadlineAndRetryUnavailable(t *testing.T) {
	fake := &fakeVessels{fail: []codes.Code{codes.Unavailable, codes.Unavailable}, vessel: "v1"}
	conn := serve(t, func(s *grpc.Server) { vesselpb.RegisterVesselServiceServer(s, fake) })
	v := &vessels{client: vesselpb.NewVesselServiceClient(conn), token: strings.Repeat("s", 32)}
	vessel, err := v.reserve(context.Background(), "id-1", "owner-1", 2, 100)
	if err != nil || vessel != "v1" {
		t.Fatalf("reserve: %q, %v", vessel, err)
	}
	if fake.calls != 3 || len(fake.tokens) != 3 || fake.tokens[0] != strings.Repeat("s", 32) {
		t.Fatalf("calls %d, tokens %q", fake.calls, fake.tokens)
	}
	if fake.deadline <= 0 || fake.deadline > vesselDeadline {
		t.Fatalf("deadline %v", fake.deadline)
	}
	spec := fake.request.Specification
	if fake.request.ReservationId != "id-1" || spec.Capacity != 2 || spec.MaxWeight != 100 {
		t.Fatalf("request %v", fake.request)
	}

	for _, c := range []struct {
		fake *fakeVessels
		code codes.Code
		msg  string
	}{
		{&fakeVessels{fail: []codes.Code{codes.FailedPrecondition}}, codes.FailedPrecondition,
			"no vessel has room left for this consignment (2 containers, 100 kg)"},
		{&fakeVessels{fail: []codes.Code{codes.Unavailable, codes.Unavailable, codes.Unavailable}}, codes.Unavailable,
			"vessel-service is unreachable; retry shortly"},
		{&fakeVessels{fail: []codes.Code{codes.PermissionDenied}}, codes.Internal,
			"internal error; the service logged the details"},
		{&fakeVessels{}, codes.Internal, "internal error; the service logged the details"},
	} {
		fake := c.fake
		conn := serve(t, func(s *grpc.Server) { vesselpb.RegisterVesselServiceServer(s, fake) })
		v := &vessels{client: vesselpb.NewVesselServiceClient(conn)}
		_, err := v.reserve(context.Background(), "id-1", "owner-1", 2, 100)
		if status.Code(err) != c.code || status.Convert(err).Message() != c.msg {
			t.Errorf("got %v, want %v %q", err, c.code, c.msg)
		}
		if len(fake.tokens) != 0 {
			t.Errorf("a token was sent without SERVICE_TOKEN: %q", fake.tokens)
		}
		if err := v.confirm(context.Background(), "id-1"); status.Code(err) != codes.Unavailable ||
			!strings.Contains(status.Convert(err).Message(), "not held long enough") {
			t.Errorf("confirm: %v", err)
		}
	}
}

func TestTheServiceRefusesBeforeTouchingTheStore(t *testing.T) {
	keys, private := newKey(t)
	api := &shippingAPI{auth: &authenticator{keys: keys, verified: newVerifiedTokens()}}
	conn := serve(t, func(s *grpc.Server) { consignmentpb.RegisterShippingServiceServer(s, api) })
	client := consignmentpb.NewShippingServiceClient(conn)
	ctx := context.Background()
	authorized := metadata.AppendToOutgoingContext(ctx,
		"authorization", "Bearer "+sign(t, private, goodHeader(), goodClaims(time.Now())))

	_, err := client.GetConsignments(ctx, &consignmentpb.GetRequest{})
	if status.Code(err) != codes.Unauthenticated || status.Convert(err).Message() != string(errMissing) {
		t.Errorf("no token: %v", err)
	}
	_, err = client.GetConsignments(authorized, &consignmentpb.GetRequest{PageToken: "!!!"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad page token: %v", err)
	}
	_, err = client.CreateConsignment(authorized, &consignmentpb.Consignment{Description: "x", Weight: 1})
	if status.Code(err) != codes.InvalidArgument ||
		status.Convert(err).Message() != "a consignment needs at least one container" {
		t.Errorf("no containers: %v", err)
	}
	// About 456 bytes a container: 4650 pass the 2 MiB + 64 KiB decoding
	// limit but not the 2 MiB one; 5000 do not pass the decoding limit.
	big := &consignmentpb.Consignment{Description: "x", Weight: 1}
	for i := 0; i < 5000; i++ {
		big.Containers = append(big.Containers, &consignmentpb.Container{Origin: strings.Repeat("o", 450)})
	}
	_, err = client.CreateConsignment(authorized, big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("past the decoding limit: %v", err)
	}
	big.Containers = big.Containers[:4650]
	_, err = client.CreateConsignment(authorized, big)
	if status.Code(err) != codes.InvalidArgument ||
		!strings.HasPrefix(status.Convert(err).Message(), "a consignment may be at most 2097152 bytes encoded (2 MiB); this one is ") {
		t.Errorf("too big: %v", err)
	}
	_, err = client.CancelConsignment(authorized, &consignmentpb.CancelRequest{Id: "x"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("cancel: %v", err)
	}
}
