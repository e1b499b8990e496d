package main

// Consignments checked as consignment-service's domain.rs checks them: a
// request's consignment before it is placed, and every row read back.

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode"

	consignmentpb "shippygen/consignment/v1"

	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	maxTextLen = 500
	// maxContainers is the most containers one consignment may have.
	maxContainers = 10_000
	// maxConsignmentBytes is the largest consignment accepted, encoded.
	maxConsignmentBytes = 2 * 1024 * 1024
	// maxRequestBytes is the largest request decoded at all.
	maxRequestBytes = maxConsignmentBytes + 64*1024
	// excerptChars is the most characters of an input a message quotes.
	excerptChars = 64
)

// The states of a consignment, as stored.
const (
	statePending    = "pending"
	stateConfirmed  = "confirmed"
	stateCancelling = "cancelling"
	stateCancelled  = "cancelled"
)

// invalidInput is why a consignment is not acceptable (INVALID_ARGUMENT
// for a request, a corrupt row for the store).
type invalidInput string

func (e invalidInput) Error() string { return string(e) }

// container is one container, with the JSON names serde gives domain.rs's
// Container (the `containers` JSONB column).
type container struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Origin     string `json:"origin"`
	UserID     string `json:"user_id"`
}

// consignment is a consignment as stored.
type consignment struct {
	ID          string
	OwnerID     string
	Description string
	Weight      int32
	Containers  []container
	VesselID    string
	CreatedAt   time.Time
	State       string
}

func (c *consignment) proto() *consignmentpb.Consignment {
	containers := make([]*consignmentpb.Container, len(c.Containers))
	for i, x := range c.Containers {
		containers[i] = &consignmentpb.Container{
			Id:         x.ID,
			CustomerId: x.CustomerID,
			Origin:     x.Origin,
			UserId:     x.UserID,
		}
	}
	return &consignmentpb.Consignment{
		Id:          c.ID,
		Description: c.Description,
		Weight:      c.Weight,
		Containers:  containers,
		VesselId:    c.VesselID,
		OwnerId:     c.OwnerID,
		CreatedAt:   timestamppb.New(c.CreatedAt),
	}
}

// checkText refuses control characters as shippy_service::text does:
// all of them for one-line text, all but line breaks and tabs otherwise.
func checkText(field, value string, oneLine bool) error {
	for _, r := range value {
		if unicode.IsControl(r) && (oneLine || (r != '\n' && r != '\r' && r != '\t')) {
			return invalidInput(fmt.Sprintf(
				"%s must not contain control characters such as NUL or line breaks (got %s)",
				field, excerpt(value)))
		}
	}
	return nil
}

// bounded trims value and refuses it past maxTextLen bytes.
func bounded(value, what string) (string, error) {
	value = strings.TrimSpace(value)
	if len(value) > maxTextLen {
		return "", invalidInput(fmt.Sprintf("%s must be at most %d bytes", what, maxTextLen))
	}
	return value, nil
}

// oneLine is domain.rs's text(): one line of at most maxTextLen bytes.
func oneLine(value, what string) (string, error) {
	if err := checkText(what, value, true); err != nil {
		return "", err
	}
	return bounded(value, what)
}

func parseDescription(value string) (string, error) {
	if err := checkText("description", value, false); err != nil {
		return "", err
	}
	value, err := bounded(value, "description")
	if err != nil {
		return "", err
	}
	if value == "" {
		return "", invalidInput("description must not be empty")
	}
	return value, nil
}

func parseWeight(kilograms int32) error {
	if kilograms <= 0 {
		return invalidInput(fmt.Sprintf("weight must be greater than 0, got %d", kilograms))
	}
	return nil
}

func checkCount(count int) error {
	if count == 0 {
		return invalidInput("a consignment needs at least one container")
	}
	if count > maxContainers {
		return invalidInput(fmt.Sprintf("a consignment holds at most %d containers", maxContainers))
	}
	return nil
}

// parseContainers checks containers given by a caller (ids and owners
// filled in) or read from the store; answers them trimmed.
func parseContainers(containers []container) ([]container, error) {
	if err := checkCount(len(containers)); err != nil {
		return nil, err
	}
	seen := make(map[string]struct{}, len(containers))
	checked := make([]container, len(containers))
	for i, x := range containers {
		id, err := oneLine(x.ID, "container id")
		if err != nil {
			return nil, err
		}
		if id == "" {
			return nil, invalidInput(fmt.Sprintf("container %d has no id", i+1))
		}
		if _, dup := seen[id]; dup {
			return nil, invalidInput(fmt.Sprintf(
				"container id %s appears more than once (container %d)", excerpt(id), i+1))
		}
		seen[id] = struct{}{}
		out := container{ID: id}
		if out.CustomerID, err = oneLine(x.CustomerID, "container customer_id"); err != nil {
			return nil, err
		}
		if out.Origin, err = oneLine(x.Origin, "container origin"); err != nil {
			return nil, err
		}
		if out.UserID, err = oneLine(x.UserID, "container user_id"); err != nil {
			return nil, err
		}
		checked[i] = out
	}
	return checked, nil
}

// parseNewConsignment is NewConsignment::parse: a container without an id
// gets a generated one, without a user_id the caller's.
func parseNewConsignment(c *consignmentpb.Consignment, caller string) (*consignment, error) {
	description, err := parseDescription(c.Description)
	if err != nil {
		return nil, err
	}
	if err := parseWeight(c.Weight); err != nil {
		return nil, err
	}
	// Before any id is generated for a request that is too big.
	if err := checkCount(len(c.Containers)); err != nil {
		return nil, err
	}
	containers := make([]container, len(c.Containers))
	for i, x := range c.Containers {
		containers[i] = container{ID: x.Id, CustomerID: x.CustomerId, Origin: x.Origin, UserID: x.UserId}
		if strings.TrimSpace(x.Id) == "" {
			containers[i].ID = newUUID()
		}
		if strings.TrimSpace(x.UserId) == "" {
			containers[i].UserID = caller
		}
	}
	if containers, err = parseContainers(containers); err != nil {
		return nil, err
	}
	return &consignment{Description: description, Weight: c.Weight, Containers: containers}, nil
}

// newUUID is a random (version 4) UUID in its usual text form.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// excerpt quotes at most excerptChars characters of input the way Rust's
// `{:?}` does (shippy_service::text::excerpt), with "…" when cut.
func excerpt(input string) string {
	cut, count := len(input), 0
	for i := range input {
		if count == excerptChars {
			cut = i
			break
		}
		count++
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range input[:cut] {
		switch {
		case r == 0:
			b.WriteString(`\0`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\\' || r == '"':
			b.WriteByte('\\')
			b.WriteRune(r)
		case !unicode.IsPrint(r) || unicode.In(r, unicode.Mn, unicode.Me, unicode.Other_Grapheme_Extend):
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	if cut < len(input) {
		b.WriteString("…")
	}
	return b.String()
}
