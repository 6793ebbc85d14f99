package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
)

// RequestIDHeader is the metadata key of a request's id: taken from the request when sane (see
// [SaneRequestID]), else generated, and always returned in the response header.
const RequestIDHeader = "x-request-id"

// MinTokenLength is the shortest bearer token modeld accepts, in bytes: shorter tokens can be
// guessed (`openssl rand -hex 16` makes a 32-character one). [Options.AuthTokens] are not checked
// against it; the command that reads them does.
const MinTokenLength = 16

// openServices answer without a token and without rate limiting: load balancers probe health
// without credentials, and reflection describes the API only.
var openServices = map[string]bool{
	healthpb.Health_ServiceDesc.ServiceName:                    true,
	reflectionv1.ServerReflection_ServiceDesc.ServiceName:      true,
	reflectionv1alpha.ServerReflection_ServiceDesc.ServiceName: true,
}

// guarded reports whether a call needs a token and counts against the rate limit.
func guarded(_ context.Context, c interceptors.CallMeta) bool { return !openServices[c.Service] }

// SaneRequestID reports whether a client's x-request-id may be used as it is: 1 to 128
// characters of [A-Za-z0-9._:/+=-], so that it cannot forge log fields or fill the logs.
func SaneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '_' || c == ':' || c == '/' || c == '+' || c == '=' || c == '-':
		default:
			return false
		}
	}
	return true
}

// requestID returns the call's id: the client's x-request-id if sane, else 16 random bytes in hex.
func requestID(ctx context.Context) string {
	if ids := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(ids) == 1 && SaneRequestID(ids[0]) {
		return ids[0]
	}
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// withRequestID puts the call's id into the logging fields of ctx, so that every log line of the
// call carries request_id.
func withRequestID(ctx context.Context) (context.Context, string) {
	id := requestID(ctx)
	return logging.InjectFields(ctx, logging.Fields{"request_id", id}), id
}

func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, id := withRequestID(ctx)
	if err := grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id)); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func requestIDStream(srv any, stream grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, id := withRequestID(stream.Context())
	if err := stream.SetHeader(metadata.Pairs(RequestIDHeader, id)); err != nil {
		return err
	}
	w := middleware.WrapServerStream(stream)
	w.WrappedContext = ctx
	return handler(srv, w)
}

// tokens checks bearer tokens. It keeps their SHA-256 hashes only, and compares hashes in
// constant time, so that neither a token's bytes nor its length leak through timing.
type tokens struct {
	hashes [][sha256.Size]byte
}

// newTokens returns the checker of list.
func newTokens(list []string) *tokens {
	t := &tokens{}
	for _, tok := range list {
		t.hashes = append(t.hashes, sha256.Sum256([]byte(tok)))
	}
	return t
}

type clientKey struct{}

// authenticate is the auth.AuthFunc: the bearer token must be one of the server's. It puts the
// client's identity ("token:" and the first 8 hex digits of the token's SHA-256) into ctx, for
// the rate limiter, and into the call's log fields as client. Errors are Unauthenticated.
func (t *tokens) authenticate(ctx context.Context) (context.Context, error) {
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "a bearer token is required: send the metadata authorization: Bearer TOKEN")
	}
	h := sha256.Sum256([]byte(tok))
	found := 0
	for _, want := range t.hashes { // all of them, so that the time does not say which matched
		found |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	if found != 1 {
		return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid")
	}
	id := "token:" + hex.EncodeToString(h[:4])
	logging.AddFields(ctx, logging.Fields{"client", id})
	return context.WithValue(ctx, clientKey{}, id), nil
}

// clientOf returns the rate-limit key of a call: the token identity authenticate found, else the
// peer's IP address.
func clientOf(ctx context.Context) string {
	if id, ok := ctx.Value(clientKey{}).(string); ok {
		return id
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	if a, ok := p.Addr.(*net.TCPAddr); ok {
		return "ip:" + a.IP.String()
	}
	return "addr:" + p.Addr.String()
}

// limiter is the ratelimit.Limiter of the server: a token bucket (golang.org/x/time/rate) per
// client (see clientOf) of r calls per second and bursts of burst calls.
type limiter struct {
	r     rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
	sweepAt int // sweep idle clients when the map grows to this size
}

func newLimiter(perSecond float64, burst int) *limiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return &limiter{r: rate.Limit(perSecond), burst: burst, clients: map[string]*rate.Limiter{}, sweepAt: 1024}
}

// Limit takes one token from the client's bucket; with none left it returns an error, which the
// ratelimit interceptor turns into ResourceExhausted.
func (l *limiter) Limit(ctx context.Context) error {
	key := clientOf(ctx)
	now := time.Now()
	l.mu.Lock()
	lim, ok := l.clients[key]
	if !ok {
		if len(l.clients) >= l.sweepAt {
			l.sweep(now)
		}
		lim = rate.NewLimiter(l.r, l.burst)
		l.clients[key] = lim
	}
	l.mu.Unlock()
	if !lim.AllowN(now, 1) {
		return fmt.Errorf("client %s is above %g requests/s (burst %d)", key, float64(l.r), l.burst)
	}
	return nil
}

// sweep forgets the clients whose bucket is full again: a fresh bucket behaves the same, so the
// map holds only the clients of the last burst/r seconds. It doubles sweepAt when most clients
// are active, so sweeping costs O(1) per new client.
func (l *limiter) sweep(now time.Time) {
	for key, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, key)
		}
	}
	l.sweepAt = max(1024, 2*len(l.clients))
}

// fieldsHandler adds the call's logging fields (grpc.method, request_id, client, ...) to the
// records the handlers log with a call's context.
type fieldsHandler struct{ slog.Handler }

func (h fieldsHandler) Handle(ctx context.Context, r slog.Record) error {
	f := logging.ExtractFields(ctx)
	for i := 0; i+1 < len(f); i += 2 {
		if k, ok := f[i].(string); ok {
			r.AddAttrs(slog.Any(k, f[i+1]))
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h fieldsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return fieldsHandler{h.Handler.WithAttrs(as)}
}

func (h fieldsHandler) WithGroup(name string) slog.Handler {
	return fieldsHandler{h.Handler.WithGroup(name)}
}
