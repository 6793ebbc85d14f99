package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/modeld-dev/modeld/internal/testcerts"
	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

// serve runs modeld with args (plus empty model and data directories, no default model) until
// the test ends, and returns the address it serves on.
func serve(t *testing.T, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	c, err := parseFlags(append([]string{"--models-dir", dir, "--data-dir", "", "--default-model", ""}, args...))
	if err != nil {
		t.Fatal(err)
	}
	rec := &records{serving: make(chan string, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- run(ctx, c, slog.New(rec)) }()
	select {
	case addr := <-rec.serving:
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
		return addr
	case err := <-done:
		cancel()
		t.Fatalf("run: %v", err)
		return ""
	}
}

// clientTLS returns client credentials trusting the CA file ca and presenting the certificate
// cert/key if given.
func clientTLS(t *testing.T, ca, cert, key string) credentials.TransportCredentials {
	t.Helper()
	return credentials.NewTLS(testcerts.ClientConfig(t, ca, cert, key))
}

// listModels calls ModelService.ListModels on addr with creds and returns the status code.
func listModels(t *testing.T, ctx context.Context, addr string, creds credentials.TransportCredentials) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = modeldv1.NewModelServiceClient(conn).ListModels(ctx, &modeldv1.ListModelsRequest{})
	return status.Code(err)
}

func TestTLS(t *testing.T) {
	certs, other := testcerts.New(t), testcerts.New(t)
	addr := serve(t, "--addr", "127.0.0.1:0", "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey)
	for _, tc := range []struct {
		name  string
		creds credentials.TransportCredentials
		want  codes.Code
	}{
		{"trusted", clientTLS(t, certs.CA, "", ""), codes.OK},
		{"plaintext", insecure.NewCredentials(), codes.Unavailable},
		{"untrusted_server", clientTLS(t, other.CA, "", ""), codes.Unavailable},
	} {
		if got := listModels(t, t.Context(), addr, tc.creds); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMutualTLSAndTokens(t *testing.T) {
	certs, other := testcerts.New(t), testcerts.New(t)
	const token = "mtls-token-0123456789abcdef"
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("# the test's client\n"+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := serve(t, "--addr", "127.0.0.1:0", "--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey,
		"--tls-client-ca", certs.CA, "--auth-token-file", tokens)
	authed := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+token)
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		creds credentials.TransportCredentials
		want  codes.Code
	}{
		{"cert_and_token", authed, clientTLS(t, certs.CA, certs.ClientCert, certs.ClientKey), codes.OK},
		{"cert_without_token", t.Context(), clientTLS(t, certs.CA, certs.ClientCert, certs.ClientKey), codes.Unauthenticated},
		{"no_cert", authed, clientTLS(t, certs.CA, "", ""), codes.Unavailable},
		{"cert_of_another_ca", authed, clientTLS(t, certs.CA, other.ClientCert, other.ClientKey), codes.Unavailable},
	} {
		if got := listModels(t, tc.ctx, addr, tc.creds); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Health needs the client certificate but no token.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(clientTLS(t, certs.CA, certs.ClientCert, certs.ClientKey)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without token: %v", err)
	}
}

func TestRefusesPublicAddressWithoutAuth(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		c, err := parseFlags([]string{"--addr", addr, "--models-dir", t.TempDir(), "--data-dir", "", "--default-model", ""})
		if err != nil {
			t.Fatal(err)
		}
		err = run(t.Context(), c, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "--auth-token-file") || !strings.Contains(err.Error(), "--insecure") {
			t.Errorf("--addr %s without auth: %v, want a refusal naming --auth-token-file and --insecure", addr, err)
		}
	}
	for _, tc := range []struct {
		addr          string
		tokens        bool
		clientCA      string
		insecure, bad bool
	}{
		{addr: "127.0.0.1:1"}, {addr: "[::1]:1"}, {addr: "localhost:1"},
		{addr: "0.0.0.0:1", bad: true}, {addr: ":1", bad: true}, {addr: "192.0.2.1:1", bad: true},
		{addr: "0.0.0.0:1", tokens: true}, {addr: "0.0.0.0:1", clientCA: "ca.pem"}, {addr: "0.0.0.0:1", insecure: true},
	} {
		err := checkExposure(config{addr: tc.addr, tlsClientCA: tc.clientCA, insecure: tc.insecure}, tc.tokens)
		if (err != nil) != tc.bad {
			t.Errorf("%+v: %v, want refused=%v", tc, err, tc.bad)
		}
	}
	// --insecure serves beyond loopback.
	addr := serve(t, "--addr", "0.0.0.0:0", "--insecure")
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if got := listModels(t, t.Context(), "127.0.0.1:"+port, insecure.NewCredentials()); got != codes.OK {
		t.Errorf("--insecure on %s: %v", addr, got)
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good", "# clients\n\n  alpha-0123456789abcdef  \n# bravo-0123456789abcdef\nb64+/token.value_~0123==\n")
	got, err := readTokens(good, "env-one-0123456789abcdef, env-two-0123456789abcdef")
	want := []string{"alpha-0123456789abcdef", "b64+/token.value_~0123==", "env-one-0123456789abcdef", "env-two-0123456789abcdef"}
	if err != nil || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("readTokens = %q, %v; want %q", got, err, want)
	}
	if got, err := readTokens("", ""); err != nil || len(got) != 0 {
		t.Errorf("no file, no env: %q, %v; want none", got, err)
	}
	for _, tc := range []struct {
		file, env, secret, want string
	}{
		{write("short", "ok-0123456789abcdef\nshort-secret\n"), "", "short-secret", "line 2: the token is shorter than 16"},
		{write("space", "has a space-0123456789\n"), "", "has a space", "line 1: the token has a character outside"},
		{write("empty", "# nothing\n\n"), "", "", "holds no token"},
		{filepath.Join(dir, "missing"), "", "", "no such file"},
		{"", "good-0123456789abcdef,,", "", "MODELD_AUTH_TOKENS: token 2: the token is shorter"},
		{"", "bad\ttab-0123456789abcdef", "bad\ttab", "MODELD_AUTH_TOKENS: token 1: the token has a character outside"},
	} {
		_, err := readTokens(tc.file, tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.secret != "" && strings.Contains(err.Error(), tc.secret)) {
			t.Errorf("readTokens(%s, %q) = %v, want an error with %q that does not quote the token", tc.file, tc.env, err, tc.want)
		}
	}
}

func TestSecurityFlags(t *testing.T) {
	t.Setenv("MODELD_AUTH_TOKENS", "from-env-0123456789abcdef")
	t.Setenv("MODELD_RATE_LIMIT", "2.5")
	t.Setenv("MODELD_INSECURE", "true")
	c, err := parseFlags([]string{"--rate-burst", "7", "--max-message-bytes", "1000"})
	if err != nil {
		t.Fatal(err)
	}
	if c.authTokens != "from-env-0123456789abcdef" || c.rateLimit != 2.5 || c.rateBurst != 7 || !c.insecure || c.maxMessageBytes != 1000 {
		t.Errorf("config %+v", c)
	}
	d, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.maxMessageBytes != 4<<20 || d.maxConcurrentStreams != 1024 || d.keepaliveTime.Seconds() != 30 || d.logPayloads {
		t.Errorf("defaults %+v", d)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", "x.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-client-ca", "ca.pem"}, "--tls-client-ca needs both"},
		{[]string{"--max-concurrent-streams", "4294967296"}, "--max-concurrent-streams 4294967296: at most 4294967295"},
	} {
		c, err := parseFlags(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := transportOptions(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
