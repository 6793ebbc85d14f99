package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/modeld-dev/modeld/internal/server"
)

// readTokens returns the bearer tokens of the file path ("" for none: one token a line; blank
// lines and lines starting with # are skipped) and of env (MODELD_AUTH_TOKENS: comma-separated).
// A token is at least server.MinTokenLength characters of RFC 6750's token alphabet
// (A-Z a-z 0-9 - . _ ~ + / =). Errors name the file and line or the position in env, never a token.
func readTokens(path, env string) ([]string, error) {
	var list []string
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--auth-token-file: %w", err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := checkToken(line); err != nil {
				return nil, fmt.Errorf("--auth-token-file %s: line %d: %w", path, n, err)
			}
			list = append(list, line)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("--auth-token-file %s: %w", path, err)
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("--auth-token-file %s holds no token", path)
		}
	}
	if env != "" {
		for i, tok := range strings.Split(env, ",") {
			tok = strings.TrimSpace(tok)
			if err := checkToken(tok); err != nil {
				return nil, fmt.Errorf("MODELD_AUTH_TOKENS: token %d: %w", i+1, err)
			}
			list = append(list, tok)
		}
	}
	return list, nil
}

// checkToken reports what is wrong with a bearer token, without quoting it.
func checkToken(tok string) error {
	if len(tok) < server.MinTokenLength {
		return fmt.Errorf("the token is shorter than %d characters (make one with: openssl rand -hex 32)", server.MinTokenLength)
	}
	for _, c := range []byte(tok) {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0
		if !ok {
			return errors.New("the token has a character outside A-Z a-z 0-9 - . _ ~ + / =")
		}
	}
	return nil
}

// loopback reports whether addr (host:port) listens on loopback only. An empty host, an
// unspecified address (0.0.0.0, ::) and any other address are not loopback; a name is resolved.
func loopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %s: %w", addr, err)
	}
	if host == "" {
		return false, nil
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback(), nil
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false, fmt.Errorf("--addr %s: %w", addr, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false, nil
		}
	}
	return len(ips) > 0, nil
}

// checkExposure refuses an address beyond loopback when clients are not authenticated, neither
// by bearer token (authenticated) nor by client certificate (--tls-client-ca), unless --insecure.
func checkExposure(c config, authenticated bool) error {
	local, err := loopback(c.addr)
	if err != nil || local || authenticated || c.tlsClientCA != "" || c.insecure {
		return err
	}
	return fmt.Errorf("refusing to listen on %s, beyond loopback, without authentication: "+
		"give bearer tokens with --auth-token-file (or MODELD_AUTH_TOKENS), or client certificates with --tls-client-ca, "+
		"or --insecure to serve anyone who can reach this address", c.addr)
}

// serverTLS returns the TLS configuration of --tls-cert and --tls-key (PEM files) and, with
// --tls-client-ca, requiring client certificates that CA bundle signed (mutual TLS).
func serverTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("--tls-cert and --tls-key go together (and --tls-client-ca needs both)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// transportOptions returns the connection-level server options of c: TLS, keepalive and the
// concurrent streams per connection.
func transportOptions(c config) ([]grpc.ServerOption, error) {
	if c.maxConcurrentStreams > math.MaxUint32 {
		return nil, fmt.Errorf("--max-concurrent-streams %d: at most %d", c.maxConcurrentStreams, uint32(math.MaxUint32))
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: c.keepaliveTime, Timeout: c.keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: c.keepaliveMinTime, PermitWithoutStream: true}),
	}
	if c.maxConcurrentStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(c.maxConcurrentStreams)))
	}
	cfg, err := serverTLS(c.tlsCert, c.tlsKey, c.tlsClientCA)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	return opts, nil
}
