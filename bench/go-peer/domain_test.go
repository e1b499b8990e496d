package main

import (
	"regexp"
	"strings"
	"testing"

	consignmentpb "shippygen/consignment/v1"
)

func sample() *consignmentpb.Consignment {
	return &consignmentpb.Consignment{
		Description: "Test",
		Weight:      100,
		Containers: []*consignmentpb.Container{
			{Id: "c1", CustomerId: "cust001", Origin: "Manchester"},
			{CustomerId: "cust002", Origin: "Derby", UserId: "someone"},
		},
	}
}

func TestContainersDefaultToTheCallerAndGetIds(t *testing.T) {
	parsed, err := parseNewConsignment(sample(), "caller-1")
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Containers[0].UserID != "caller-1" || parsed.Containers[1].UserID != "someone" {
		t.Fatalf("owners: %+v", parsed.Containers)
	}
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).
		MatchString(parsed.Containers[1].ID) {
		t.Fatalf("generated id %q", parsed.Containers[1].ID)
	}
}

func TestBadConsignmentsSayWhatIsWrong(t *testing.T) {
	blank, light, empty, duplicate, long, nul := sample(), sample(), sample(), sample(), sample(), sample()
	blank.Description = " "
	light.Weight = 0
	empty.Containers = nil
	duplicate.Containers[1].Id = "c1"
	long.Description = strings.Repeat("x", 501)
	nul.Containers[0].Origin = "Man\x00chester"
	for _, c := range []struct {
		bad  *consignmentpb.Consignment
		want string
	}{
		{blank, "description must not be empty"},
		{light, "weight must be greater than 0, got 0"},
		{empty, "a consignment needs at least one container"},
		{duplicate, `container id "c1" appears more than once (container 2)`},
		{long, "description must be at most 500 bytes"},
		{nul, `container origin must not contain control characters such as NUL or line breaks (got "Man\0chester")`},
	} {
		_, err := parseNewConsignment(c.bad, "caller")
		if err == nil || err.Error() != c.want {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}

func TestExcerptsQuoteAsRustDebugDoes(t *testing.T) {
	for input, want := range map[string]string{
		"abc":                    `"abc"`,
		"a\r\nb\x00":             `"a\r\nb\0"`,
		`say "hi"\`:              `"say \"hi\"\\"`,
		"\u00ad\u0301\x7f":       `"\u{ad}\u{301}\u{7f}"`,
		strings.Repeat("x", 100): `"` + strings.Repeat("x", 64) + `"…`,
		strings.Repeat("é", 100): `"` + strings.Repeat("é", 64) + `"…`,
		strings.Repeat("y", 64):  `"` + strings.Repeat("y", 64) + `"`,
	} {
		if got := excerpt(input); got != want {
			t.Errorf("excerpt(%q) = %s, want %s", input, got, want)
		}
	}
}

func TestContainersAreStoredAsSerdeWritesThem(t *testing.T) {
	encoded, err := encodeContainers([]container{{ID: "c1", CustomerID: "<&>", Origin: "o", UserID: "u"}})
	if err != nil {
		t.Fatal(err)
	}
	const want = `[{"id":"c1","customer_id":"<&>","origin":"o","user_id":"u"}]`
	if encoded != want {
		t.Fatalf("got %s, want %s", encoded, want)
	}
	back, err := decodeContainers([]byte(encoded))
	if err != nil || len(back) != 1 || back[0].CustomerID != "<&>" {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	for _, bad := range []string{`null`, `{}`, `[{"id":"c1"}]`, `[{"id":null,"customer_id":"","origin":"","user_id":""}]`} {
		if _, err := decodeContainers([]byte(bad)); err == nil {
			t.Errorf("%s was read", bad)
		}
	}
}
