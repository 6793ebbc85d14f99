package main

import (
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
	"github.com/modeld-dev/modeld/internal/engine"
	"github.com/modeld-dev/modeld/internal/oracletest"
	"github.com/modeld-dev/modeld/internal/registry"
	"github.com/modeld-dev/modeld/internal/server"
	"github.com/modeld-dev/modeld/internal/testcerts"
)

// TestConnectionFlags runs modelcli against a server that requires TLS, a client certificate
// (mutual TLS) and a bearer token, with and without each.
func TestConnectionFlags(t *testing.T) {
	certs, other := testcerts.New(t), testcerts.New(t)
	const token = "cli-token-0123456789abcdef"
	creds := credentials.NewTLS(certs.ServerConfig(t, true))

	log := slog.New(slog.DiscardHandler)
	reg, err := registry.New(registry.Options{Dir: oracletest.ModelsDir(t), Backend: func() (backend.Backend, error) { return cpu.New(), nil }, Engine: engine.Config{}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	g := server.New(server.Options{Registry: reg, Log: log, AuthTokens: []string{token}}).GRPCServer(grpc.Creds(creds))
	addr := serve(t, g, reg.Close)

	mtls := []string{"--tls-ca", certs.CA, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey}
	for _, tc := range []struct {
		name   string
		env    string // MODELD_TOKEN
		args   []string
		code   int
		stderr string
	}{
		{"all", "", append(mtls, "--token", token), 0, ""},
		{"token_from_env", token, mtls, 0, ""},
		{"server_name", token, append(mtls, "--tls-server-name", "localhost"), 0, ""},
		{"no_token", "", mtls, 1, "Unauthenticated"},
		{"wrong_token", "wrong-token-0123456789abcdef", mtls, 1, "Unauthenticated"},
		{"no_client_cert", token, []string{"--tls-ca", certs.CA}, 1, "Unavailable"},
		{"client_cert_of_another_ca", token, []string{"--tls-ca", certs.CA, "--tls-cert", other.ClientCert, "--tls-key", other.ClientKey}, 1, "Unavailable"},
		{"server_of_another_ca", token, []string{"--tls-ca", other.CA, "--tls-cert", certs.ClientCert, "--tls-key", certs.ClientKey}, 1, "Unavailable"},
		{"wrong_server_name", token, append(mtls, "--tls-server-name", "elsewhere.example"), 1, "Unavailable"},
		{"plaintext", token, nil, 1, "Unavailable"},
		{"cert_without_key", token, []string{"--tls-cert", certs.ClientCert}, 2, "--tls-cert and --tls-key go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MODELD_TOKEN", tc.env)
			code, stdout, stderr := cliRun(t, addr, append(tc.args, "models", "list")...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) || (code == 0 && !strings.Contains(stdout, "tiny")) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tc.code, tc.stderr)
			}
		})
	}
}
