package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	userpb "shippygen/user/v1"

	"google.golang.org/grpc/metadata"
)

const testKid = "key-1"

func newKey(t *testing.T) (keySet, ed25519.PrivateKey) {
	t.Helper()
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return keySet{testKid: public}, private
}

func part(t *testing.T, value interface{}) string {
	t.Helper()
	encoded, err := json.Marshal(value)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(encoded)
}

// sign makes a token the way user-service does (jsonwebtoken, EdDSA).
func sign(t *testing.T, key ed25519.PrivateKey, header, payload map[string]interface{}) string {
	t.Helper()
	message := part(t, header) + "." + part(t, payload)
	return message + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(message)))
}

func goodHeader() map[string]interface{} {
	return map[string]interface{}{"typ": "JWT", "alg": "EdDSA", "kid": testKid}
}

func goodClaims(now time.Time) map[string]interface{} {
	return map[string]interface{}{
		"sub": "user-1",
		"iss": issuer,
		"aud": audience,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}

func TestGoodTokensVerify(t *testing.T) {
	keys, private := newKey(t)
	now := time.Now()
	claims := goodClaims(now)
	claims["roles"] = []string{"admin"}
	got, err := keys.verify(sign(t, private, goodHeader(), claims), now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sub != "user-1" || len(got.Roles) != 1 || got.Roles[0] != "admin" {
		t.Fatalf("claims: %+v", got)
	}
	// Within the leeway, expired and early tokens still verify.
	leeway := goodClaims(now)
	leeway["exp"] = now.Unix() - 30
	leeway["iat"] = now.Unix() + 30
	if _, err := keys.verify(sign(t, private, goodHeader(), leeway), now); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
}

func TestBadTokensAreRefused(t *testing.T) {
	keys, private := newKey(t)
	_, other := newKey(t)
	now := time.Now()
	with := func(name string, value interface{}) map[string]interface{} {
		claims := goodClaims(now)
		if value == nil {
			delete(claims, name)
		} else {
			claims[name] = value
		}
		return claims
	}
	header := func(name string, value interface{}) map[string]interface{} {
		h := goodHeader()
		if value == nil {
			delete(h, name)
		} else {
			h[name] = value
		}
		return h
	}
	good := sign(t, private, goodHeader(), goodClaims(now))
	dot := strings.LastIndexByte(good, '.')
	tamperedPayload := part(t, with("sub", "someone-else"))
	parts := strings.Split(good, ".")
	cases := []struct {
		name, token, want string
	}{
		{"tampered payload", parts[0] + "." + tamperedPayload + "." + parts[2], "invalid token: bad signature"},
		{"tampered signature", good[:dot+1] + base64.RawURLEncoding.EncodeToString(make([]byte, 64)), "invalid token: bad signature"},
		{"short signature", good[:dot+1] + "c2ln", "invalid token: bad signature"},
		{"another key", sign(t, other, goodHeader(), goodClaims(now)), "invalid token: bad signature"},
		{"wrong audience", sign(t, private, goodHeader(), with("aud", "elsewhere")), "invalid token: wrong audience"},
		{"audience list", sign(t, private, goodHeader(), with("aud", []string{audience})), "invalid token: malformed"},
		{"wrong issuer", sign(t, private, goodHeader(), with("iss", "someone")), "invalid token: wrong issuer"},
		{"expired", sign(t, private, goodHeader(), with("exp", now.Unix()-31)), "token expired: log in again"},
		{"no exp", sign(t, private, goodHeader(), with("exp", nil)), "invalid token: malformed"},
		{"no iat", sign(t, private, goodHeader(), with("iat", nil)), "invalid token: malformed"},
		{"float exp", sign(t, private, goodHeader(), with("exp", 1e12+0.5)), "invalid token: malformed"},
		{"no subject", sign(t, private, goodHeader(), with("sub", "")), "invalid token: no subject"},
		{"null subject", sign(t, private, goodHeader(), map[string]interface{}{
			"sub": nil, "iss": issuer, "aud": audience, "iat": now.Unix(), "exp": now.Unix() + 60,
		}), "invalid token: malformed"},
		{"issued in the future", sign(t, private, goodHeader(), with("iat", now.Unix()+31)), "invalid token: issued in the future"},
		{"not valid yet", sign(t, private, goodHeader(), with("nbf", now.Unix()+31)), "invalid token: not valid yet"},
		{"unreadable nbf", sign(t, private, goodHeader(), with("nbf", "soon")), "invalid token: malformed"},
		{"alg none", sign(t, private, header("alg", "none"), goodClaims(now)), "invalid token: malformed"},
		{"alg HS256", sign(t, private, header("alg", "HS256"), goodClaims(now)), "invalid token: wrong algorithm"},
		{"no kid", sign(t, private, header("kid", nil), goodClaims(now)), "invalid token: no key id"},
		{"kid not text", sign(t, private, header("kid", 5), goodClaims(now)), "invalid token: malformed"},
		{"typ not text", sign(t, private, header("typ", 5), goodClaims(now)), "invalid token: malformed"},
		{"unknown kid", sign(t, private, header("kid", "key-2"), goodClaims(now)), "token signed with an unknown key"},
		{"padded", good + "==", "invalid token: malformed"},
		{"empty", "", "invalid token: malformed"},
		{"garbage", "garbage", "invalid token: malformed"},
		{"dots", "a.b.c", "invalid token: malformed"},
		{"unsigned none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.", "invalid token: malformed"},
		{"hs256 header", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.e30.c2ln", "invalid token: wrong algorithm"},
	}
	cache := newVerifiedTokens()
	for _, c := range cases {
		_, err := keys.verify(c.token, now)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
		if _, err := cache.verify(keys, c.token, now); err == nil {
			t.Errorf("%s: accepted through the cache", c.name)
		}
	}
	if len(cache.tokens) != 0 {
		t.Errorf("the cache kept %d tokens that did not verify", len(cache.tokens))
	}
}

func TestTheCacheKeepsOnlyVerifiedTokensForAWhile(t *testing.T) {
	keys, private := newKey(t)
	now := time.Now()
	cache := newVerifiedTokens()
	token := sign(t, private, goodHeader(), goodClaims(now))
	if _, err := cache.verify(keys, token, now); err != nil {
		t.Fatal(err)
	}
	if _, found := cache.tokens[token]; !found {
		t.Fatal("a verified token was not kept")
	}
	// Kept: served without the keys.
	if _, err := cache.verify(keySet{}, token, now.Add(59*time.Second)); err != nil {
		t.Fatalf("kept token: %v", err)
	}
	// Past verifiedKeep it is verified again.
	if _, err := cache.verify(keySet{}, token, now.Add(61*time.Second)); err == nil {
		t.Fatal("a token kept past verifiedKeep was served")
	}
	// Never past its expiry.
	cache.tokens["expired"] = verified{claims: &claims{Sub: "u1", Exp: uint64(now.Unix())}, at: now}
	if _, err := cache.verify(keys, "expired", now); err == nil {
		t.Fatal("expired claims were served")
	}
}

func TestTokensAreReadFromMetadata(t *testing.T) {
	cases := []struct {
		md      metadata.MD
		want    string
		wantErr string
	}{
		{metadata.Pairs("authorization", "Bearer abc.def.ghi"), "abc.def.ghi", ""},
		{metadata.Pairs("authorization", "bearer  xyz "), "xyz", ""},
		{metadata.Pairs("token", "abc"), "abc", ""},
		{metadata.MD{}, "", string(errMissing)},
		{metadata.Pairs("token", "  "), "", string(errMissing)},
		{metadata.Pairs("authorization", "Basic dXNlcg=="), "", "invalid token: authorization must be `Bearer <token>`"},
		{metadata.Pairs("authorization", "Bearer"), "", "invalid token: authorization must be `Bearer <token>`"},
		{metadata.Pairs("authorization", "Bearer é"), "", "invalid token: authorization is not text"},
	}
	for _, c := range cases {
		got, err := tokenFromMetadata(c.md)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("%v: got %q, %v; want error %q", c.md, got, err, c.wantErr)
			}
		} else if err != nil || got != c.want {
			t.Errorf("%v: got %q, %v; want %q", c.md, got, err, c.want)
		}
	}
}

func TestPublicKeysAreReadFromPEM(t *testing.T) {
	public, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(public)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	keys, err := parseKeys(&userpb.PublicKeys{Keys: []*userpb.PublicKey{
		{Kid: "k1", Algorithm: "EdDSA", PublicKeyPem: pemText},
	}})
	if err != nil || !keys["k1"].Equal(public) {
		t.Fatalf("keys %v, error %v", keys, err)
	}
	if _, err := parseKeys(&userpb.PublicKeys{Keys: []*userpb.PublicKey{
		{Kid: "k2", PublicKeyPem: "not a key"},
	}}); err == nil {
		t.Fatal("a key that is not PEM was accepted")
	}
}
