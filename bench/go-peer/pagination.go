package main

// Page tokens exactly as shippy-service/src/pagination.rs makes and reads
// them, so a token of either service resumes a list in the other:
// base64url (no padding) of "<created_at in Unix microseconds>.<id>".

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxTokenLen is the longest page token accepted.
const maxTokenLen = 512

// The microseconds chrono's DateTime<Utc> can hold (years -262143 through
// 262142): a token outside them is refused, as the Rust service refuses it.
var (
	minCursorMicros = time.Date(-262143, 1, 1, 0, 0, 0, 0, time.UTC).Unix() * 1_000_000
	maxCursorMicros = time.Date(262143, 1, 1, 0, 0, 0, 0, time.UTC).Unix()*1_000_000 - 1
)

// strictBase64 is the base64 crate's URL_SAFE_NO_PAD: no padding, no
// stray bits (Go's decoder also skips line breaks; decodeToken refuses them).
var strictBase64 = base64.RawURLEncoding.Strict()

// cursor is a position in a list ordered by creation time, then id: after
// the item with these.
type cursor struct {
	createdAt time.Time
	id        string
}

// pageSize is requested, or def for 0, at most max.
func pageSize(requested, def, max uint32) uint32 {
	switch {
	case requested == 0:
		return def
	case requested > max:
		return max
	default:
		return requested
	}
}

// encodeToken is the token that resumes after c.
func encodeToken(c cursor) string {
	return strictBase64.EncodeToString([]byte(fmt.Sprintf("%d.%s", c.createdAt.UnixMicro(), c.id)))
}

// decodeToken is the cursor in a caller's token; nil (the first page) for
// an empty one; INVALID_ARGUMENT for one this service did not give out.
func decodeToken(token string) (*cursor, error) {
	if token == "" {
		return nil, nil
	}
	if len(token) > maxTokenLen {
		return nil, status.Errorf(codes.InvalidArgument,
			"page_token is longer than any this service gives out (%d bytes); "+
				"start again with an empty one", maxTokenLen)
	}
	invalid := status.Error(codes.InvalidArgument,
		"page_token is not one this service gave out; start again with an empty one")
	if strings.ContainsAny(token, "\r\n") {
		return nil, invalid
	}
	raw, err := strictBase64.DecodeString(token)
	if err != nil || !utf8.Valid(raw) {
		return nil, invalid
	}
	micros, id, found := strings.Cut(string(raw), ".")
	if !found {
		return nil, invalid
	}
	at, err := strconv.ParseInt(micros, 10, 64)
	if err != nil || id == "" || strings.IndexFunc(id, unicode.IsControl) >= 0 {
		return nil, invalid
	}
	if at < minCursorMicros || at > maxCursorMicros {
		return nil, invalid
	}
	return &cursor{createdAt: time.UnixMicro(at).UTC(), id: id}, nil
}
