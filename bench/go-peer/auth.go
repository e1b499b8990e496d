package main

// Token verification as shippy-auth does it (lib.rs, remote.rs): EdDSA
// JWTs checked against user-service's public keys, with the same checks,
// in the same order, and the same UNAUTHENTICATED messages as the
// jsonwebtoken crate's validation leads to there.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	userpb "shippygen/user/v1"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	issuer   = "shippy-user-service"
	audience = "shippy"
	// leeway is the clock skew tolerated between services, in seconds.
	leeway = 30
	// verifiedKeep is the longest a verified token is remembered.
	verifiedKeep = 60 * time.Second
	// verifiedMax is the most tokens remembered.
	verifiedMax = 100_000
)

// tokenError is why a token was refused: always UNAUTHENTICATED.
type tokenError string

func (e tokenError) Error() string { return string(e) }

const (
	errMissing    = tokenError("missing token: send `authorization: Bearer <token>` (get one with `user-cli login`)")
	errExpired    = tokenError("token expired: log in again")
	errUnknownKey = tokenError("token signed with an unknown key")
)

func invalidToken(why string) tokenError { return tokenError("invalid token: " + why) }

// claims is what a token says (shippy_auth::Claims).
type claims struct {
	Sub, Iss, Aud string
	Iat, Exp      uint64
	Roles         []string
}

// keySet is user-service's public keys, by kid.
type keySet map[string]ed25519.PublicKey

// parseKeys reads a GetPublicKeys answer; fails on the first unusable key.
func parseKeys(answer *userpb.PublicKeys) (keySet, error) {
	keys := make(keySet, len(answer.Keys))
	for _, key := range answer.Keys {
		block, _ := pem.Decode([]byte(key.PublicKeyPem))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public key `%s` is not a usable EdDSA key", key.Kid)
		}
		parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
		public, ok := parsed.(ed25519.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("public key `%s` is not a usable EdDSA key", key.Kid)
		}
		keys[key.Kid] = public
	}
	return keys, nil
}

// fetchKeys calls user-service's GetPublicKeys until it answers usable
// keys. Keys are fetched once: unlike shippy-auth's Authenticator, a token
// with an unknown kid does not make the peer fetch them again.
func fetchKeys(ctx context.Context, client userpb.UserServiceClient) keySet {
	var keys keySet
	retry(ctx, "user-service's token keys", func(ctx context.Context) error {
		answer, err := client.GetPublicKeys(ctx, &userpb.GetPublicKeysRequest{})
		if err != nil {
			return err
		}
		keys, err = parseKeys(answer)
		return err
	})
	return keys
}

// tokenFromMetadata is the token a request carries: `authorization:
// Bearer <jwt>`, or the original shippy's `token: <jwt>`.
func tokenFromMetadata(md metadata.MD) (string, error) {
	if values := md.Get("authorization"); len(values) > 0 {
		if !visibleASCII(values[0]) {
			return "", invalidToken("authorization is not text")
		}
		scheme, token, found := strings.Cut(strings.TrimSpace(values[0]), " ")
		if !found || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
			return "", invalidToken("authorization must be `Bearer <token>`")
		}
		return strings.TrimSpace(token), nil
	}
	if values := md.Get("token"); len(values) > 0 {
		if !visibleASCII(values[0]) {
			return "", invalidToken("token is not text")
		}
		if token := strings.TrimSpace(values[0]); token != "" {
			return token, nil
		}
	}
	return "", errMissing
}

// visibleASCII is what http's HeaderValue::to_str accepts.
func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < 32 || b >= 127) && b != '\t' {
			return false
		}
	}
	return true
}

// splitToken cuts a token at its last two dots, as jsonwebtoken does.
func splitToken(token string) (header, payload, signature, message string, ok bool) {
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 {
		return "", "", "", "", false
	}
	message, signature = token[:dot], token[dot+1:]
	dot = strings.LastIndexByte(message, '.')
	if dot < 0 {
		return "", "", "", "", false
	}
	return message[:dot], message[dot+1:], signature, message, true
}

// b64 is jsonwebtoken's base64 (URL-safe, no padding, strict).
func b64(part string) ([]byte, bool) {
	if strings.ContainsAny(part, "\r\n") {
		return nil, false
	}
	decoded, err := strictBase64.DecodeString(part)
	return decoded, err == nil
}

// jwtAlgorithms are the `alg` names jsonwebtoken knows; any other is a
// header it cannot read.
var jwtAlgorithms = map[string]bool{
	"HS256": true, "HS384": true, "HS512": true, "ES256": true, "ES384": true,
	"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true,
	"PS512": true, "EdDSA": true,
}

// jwtHeader is a token's header as jsonwebtoken's Header reads it: alg
// required, kid and the other named fields optional text (or lists of
// text), anything else ignored. Not quite as there: jwk is not read, and
// encoding/json matches names ignoring case and lets a repeated name win
// where serde refuses both; only the message that refuses a forged token
// can differ by it (the header is signed).
type jwtHeader struct {
	Alg   *string   `json:"alg"`
	Kid   *string   `json:"kid"`
	Typ   *string   `json:"typ"`
	Cty   *string   `json:"cty"`
	Jku   *string   `json:"jku"`
	X5u   *string   `json:"x5u"`
	X5c   *[]string `json:"x5c"`
	X5t   *string   `json:"x5t"`
	X5tS  *string   `json:"x5t#S256"`
	Crit  *[]string `json:"crit"`
	Enc   *string   `json:"enc"`
	Zip   *string   `json:"zip"`
	URL   *string   `json:"url"`
	Nonce *string   `json:"nonce"`
}

// tokenKid is the kid a token's header names, read before any
// verification: the header must be readable, its alg EdDSA.
func tokenKid(token string) (string, error) {
	header, _, _, _, ok := splitToken(token)
	if !ok {
		return "", invalidToken("malformed")
	}
	decoded, ok := b64(header)
	if !ok || !utf8.Valid(decoded) {
		return "", invalidToken("malformed")
	}
	var h jwtHeader
	if err := json.Unmarshal(decoded, &h); err != nil || h.Alg == nil || !jwtAlgorithms[*h.Alg] {
		return "", invalidToken("malformed")
	}
	if *h.Alg != "EdDSA" {
		return "", invalidToken("wrong algorithm")
	}
	if h.Kid == nil {
		return "", invalidToken("no key id")
	}
	return *h.Kid, nil
}

// verify is KeySet::verify: the claims of token if one of these keys
// signed it, for the audience, by the issuer, and it has not expired.
func (keys keySet) verify(token string, now time.Time) (*claims, error) {
	kid, err := tokenKid(token)
	if err != nil {
		return nil, err
	}
	key, ok := keys[kid]
	if !ok {
		return nil, errUnknownKey
	}
	_, payload, signature, message, _ := splitToken(token)
	sig, ok := b64(signature)
	if !ok {
		return nil, invalidToken("malformed")
	}
	if !ed25519.Verify(key, []byte(message), sig) {
		return nil, invalidToken("bad signature")
	}
	decoded, ok := b64(payload)
	if !ok {
		return nil, invalidToken("malformed")
	}
	c, nbf, ok := parseClaims(decoded)
	if !ok {
		return nil, invalidToken("malformed")
	}
	seconds := uint64(0)
	if unix := now.Unix(); unix > 0 {
		seconds = uint64(unix)
	}
	// jsonwebtoken's validate(): a readable nbf, expiry, not-before,
	// issuer, audience.
	if nbf.present && !nbf.parsed {
		return nil, invalidToken("malformed")
	}
	if c.Exp < seconds-leeway {
		return nil, errExpired
	}
	if nbf.present && nbf.value > seconds+leeway {
		return nil, invalidToken("not valid yet")
	}
	if c.Iss != issuer {
		return nil, invalidToken("wrong issuer")
	}
	if c.Aud != audience {
		return nil, invalidToken("wrong audience")
	}
	if c.Sub == "" {
		return nil, invalidToken("no subject")
	}
	if c.Iat > seconds+leeway {
		return nil, invalidToken("issued in the future")
	}
	return c, nil
}

// numericDate is a token's nbf as jsonwebtoken reads it.
type numericDate struct {
	present, parsed bool
	value           uint64
}

// parseClaims reads a payload as serde reads it into shippy_auth::Claims:
// sub, iss, aud text; iat, exp whole numbers >= 0; roles, if there, a list
// of text. aud as a list is refused, as there (Claims.aud is a String).
func parseClaims(payload []byte) (*claims, numericDate, bool) {
	var nbf numericDate
	if !utf8.Valid(payload) {
		return nil, nbf, false
	}
	fields, ok := jsonObject(payload, "sub", "iss", "aud", "iat", "exp", "roles")
	if !ok {
		return nil, nbf, false
	}
	var c claims
	for _, field := range []struct {
		name string
		into *string
	}{{"sub", &c.Sub}, {"iss", &c.Iss}, {"aud", &c.Aud}} {
		if *field.into, ok = jsonString(fields[field.name]); !ok {
			return nil, nbf, false
		}
	}
	if c.Iat, ok = jsonUint(fields["iat"]); !ok {
		return nil, nbf, false
	}
	if c.Exp, ok = jsonUint(fields["exp"]); !ok {
		return nil, nbf, false
	}
	if raw, present := fields["roles"]; present {
		if isNull(raw) || json.Unmarshal(raw, &c.Roles) != nil {
			return nil, nbf, false
		}
	}
	if raw, present := fields["nbf"]; present {
		nbf.present = true
		nbf.value, nbf.parsed = jsonNumericDate(raw)
	}
	return &c, nbf, true
}

// jsonObject reads one JSON object's top-level fields, refusing trailing
// data and a repeated field among known (as serde's derived structs do).
func jsonObject(data []byte, known ...string) (map[string]json.RawMessage, bool) {
	decoder := json.NewDecoder(bytes.NewReader(data))
	if open, err := decoder.Token(); err != nil || open != json.Delim('{') {
		return nil, false
	}
	fields := make(map[string]json.RawMessage, 8)
	for decoder.More() {
		key, err := decoder.Token()
		name, isText := key.(string)
		if err != nil || !isText {
			return nil, false
		}
		var value json.RawMessage
		if err := decoder.Decode(&value); err != nil {
			return nil, false
		}
		if _, seen := fields[name]; seen {
			for _, k := range known {
				if k == name {
					return nil, false
				}
			}
		}
		fields[name] = value
	}
	if end, err := decoder.Token(); err != nil || end != json.Delim('}') {
		return nil, false
	}
	if _, err := decoder.Token(); err != io.EOF {
		return nil, false
	}
	return fields, true
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func jsonString(raw json.RawMessage) (string, bool) {
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// jsonUint is a u64 as serde reads one: a whole number (-0 included).
func jsonUint(raw json.RawMessage) (uint64, bool) {
	s := string(raw)
	if s == "-0" {
		return 0, true
	}
	if s == "" || strings.ContainsAny(s, ".eE") {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// jsonNumericDate is jsonwebtoken's numeric_type: a u64, or a float >= 0
// rounded.
func jsonNumericDate(raw json.RawMessage) (uint64, bool) {
	s := string(raw)
	if s == "" || s[0] == '"' || s == "null" || s == "true" || s == "false" || s[0] == '[' || s[0] == '{' {
		return 0, false
	}
	integer := !strings.ContainsAny(s, ".eE")
	if integer && s[0] == '-' {
		return 0, false
	}
	if integer {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			return v, true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f < 0 || f >= math.MaxUint64 {
		return 0, false
	}
	return uint64(math.Round(f)), true
}

// verifiedTokens remembers tokens that verified (VerifiedTokens): keyed by
// the whole token, kept at most verifiedKeep and never past their expiry.
// Full, it first drops what is stale, then everything (moka evicts one
// by one by frequency instead).
type verifiedTokens struct {
	mu     sync.RWMutex
	tokens map[string]verified
}

type verified struct {
	claims *claims
	at     time.Time
}

func newVerifiedTokens() *verifiedTokens {
	return &verifiedTokens{tokens: make(map[string]verified)}
}

// verify is token's claims, from the cache or by verifying it with keys.
func (v *verifiedTokens) verify(keys keySet, token string, now time.Time) (*claims, error) {
	v.mu.RLock()
	hit, found := v.tokens[token]
	v.mu.RUnlock()
	if found && now.Sub(hit.at) < verifiedKeep && hit.claims.Exp > uint64(now.Unix()) {
		return hit.claims, nil
	}
	c, err := keys.verify(token, now)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	if len(v.tokens) >= verifiedMax {
		for t, entry := range v.tokens {
			if now.Sub(entry.at) >= verifiedKeep || entry.claims.Exp <= uint64(now.Unix()) {
				delete(v.tokens, t)
			}
		}
		if len(v.tokens) >= verifiedMax {
			v.tokens = make(map[string]verified)
		}
	}
	v.tokens[token] = verified{claims: c, at: now}
	v.mu.Unlock()
	return c, nil
}

// authenticator verifies the tokens of requests (shippy_auth::Authenticator
// without its refetch on an unknown kid).
type authenticator struct {
	keys     keySet
	verified *verifiedTokens
}

// authenticate is the verified claims of the token ctx's request carries.
func (a *authenticator) authenticate(ctx context.Context) (*claims, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	token, err := tokenFromMetadata(md)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if _, err := tokenKid(token); err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if len(a.keys) == 0 {
		return nil, status.Error(codes.Unavailable,
			"cannot verify tokens yet: user-service has not handed out its keys; retry shortly")
	}
	c, err := a.verified.verify(a.keys, token, time.Now())
	if err != nil {
		var refused tokenError
		if errors.As(err, &refused) {
			return nil, status.Error(codes.Unauthenticated, refused.Error())
		}
		return nil, status.Error(codes.Internal, "internal error; the service logged the details")
	}
	return c, nil
}
