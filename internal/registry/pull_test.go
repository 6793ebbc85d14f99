package registry_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modeld-dev/modeld/internal/registry"
)

const (
	hubRepo   = "openai-community/gpt2"
	hubCommit = "607a30d783dfa663caf39e06633721c8d4cfcd7e"
)

// hubWeights is model.safetensors as the fake Hub serves it: 3 MiB and a bit, so that a pull reports
// progress mid-file.
var hubWeights = func() []byte {
	b := make([]byte, 3<<20+123)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}()

// hubFiles returns a GPT-2 repo as the Hub holds it.
func hubFiles() map[string][]byte {
	return map[string][]byte{
		"config.json":             []byte(`{"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8}`),
		"generation_config.json":  []byte(`{"bos_token_id": 50256, "eos_token_id": 50256}`),
		"vocab.json":              []byte(`{"a": 0, "b": 1, "ab": 2}`),
		"merges.txt":              []byte("#version: 0.2\na b\n"),
		"tokenizer.json":          []byte(`{"version": "1.0", "model": {"type": "BPE"}}`),
		"tokenizer_config.json":   []byte(`{"model_max_length": 1024}`),
		"special_tokens_map.json": []byte(`{"eos_token": "<|endoftext|>"}`),
		"README.md":               []byte("# gpt2\n"),
		"model.safetensors":       hubWeights,
	}
}

// hubRequest is a request the fake Hub saw.
type hubRequest struct {
	Path  string // escaped
	Range string
	Auth  string
}

// fakeHub imitates the Hub's /{owner}/{name}/resolve/{revision}/{file}: *.safetensors are LFS files,
// answered with X-Linked-Size, X-Linked-Etag and a redirect to /cdn/{sha256}; other files are
// served directly. Both honour Range.
type fakeHub struct {
	files map[string][]byte // by file name
	revs  []string          // revisions served besides hubCommit; "main" when nil
	token string            // when set, resolve requests need "Authorization: Bearer <token>"
	cdn   string            // where LFS redirects go; "" for this server

	// fault, when set, may answer the n-th CDN request (from 0) itself, returning true.
	fault func(n int, w http.ResponseWriter, r *http.Request, data []byte) bool

	sums map[string]string // hex sha256 by file name

	mu          sync.Mutex
	reqs        []hubRequest
	ncdn        int
	ignoreRange bool // the CDN answers 200 to Range requests
}

func newHub(t *testing.T, h *fakeHub) (*fakeHub, registry.Hub) {
	t.Helper()
	srv := httptest.NewServer(h.init())
	t.Cleanup(srv.Close)
	return h, registry.Hub{Endpoint: srv.URL + "/", Client: srv.Client()}
}

// init fills in h's defaults; call it before h serves.
func (h *fakeHub) init() *fakeHub {
	if h.files == nil {
		h.files = hubFiles()
	}
	h.sums = map[string]string{}
	for name, b := range h.files {
		h.sums[name] = hexSHA256(b)
	}
	return h
}

func (h *fakeHub) requests() []hubRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.reqs)
}

func (h *fakeHub) setIgnoreRange(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ignoreRange = v
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	h.mu.Lock()
	h.reqs = append(h.reqs, hubRequest{Path: path, Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization")})
	n, ignoreRange := h.ncdn, h.ignoreRange
	if strings.HasPrefix(path, "/cdn/") {
		h.ncdn++
	}
	h.mu.Unlock()

	if sum, ok := strings.CutPrefix(path, "/cdn/"); ok {
		for name, data := range h.files {
			if h.sums[name] != sum {
				continue
			}
			if h.fault != nil && h.fault(n, w, r, data) {
				return
			}
			if ignoreRange {
				r.Header.Del("Range")
			}
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
			return
		}
		http.NotFound(w, r)
		return
	}

	seg := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(seg) != 5 || seg[2] != "resolve" {
		http.NotFound(w, r)
		return
	}
	rev, _ := url.PathUnescape(seg[3])
	file := seg[4]
	if h.token != "" && r.Header.Get("Authorization") != "Bearer "+h.token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		w.Header().Set("X-Error-Message", "Access to model "+hubRepo+" is restricted.")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	revs := h.revs
	if revs == nil {
		revs = []string{"main"}
	}
	data, ok := h.files[file]
	switch {
	case seg[0]+"/"+seg[1] != hubRepo:
		hubError(w, "RepoNotFound", "Repository not found")
		return
	case rev != hubCommit && !slices.Contains(revs, rev):
		hubError(w, "RevisionNotFound", "Invalid rev id: "+rev)
		return
	case !ok:
		hubError(w, "EntryNotFound", "Entry not found")
		return
	}
	w.Header().Set("X-Repo-Commit", hubCommit)
	if strings.HasSuffix(file, ".safetensors") {
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("X-Linked-Etag", `"`+h.sums[file]+`"`)
		http.Redirect(w, r, h.cdn+"/cdn/"+h.sums[file], http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+h.sums[file][:40]+`"`) // a git blob id on the real Hub
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}

func hubError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
	http.Error(w, msg, http.StatusNotFound)
}

func hexSHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkFolder checks that dir holds exactly want, byte for byte.
func checkFolder(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got, names []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	for name := range want {
		names = append(names, name)
	}
	slices.Sort(names)
	if diff := cmp.Diff(names, got); diff != "" {
		t.Fatalf("files in %s (-want +got):\n%s", dir, diff)
	}
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want[name]) {
			t.Errorf("%s: %d bytes differ from the Hub's %d", name, len(b), len(want[name]))
		}
	}
}

// pulled is what Pull is expected to fetch of files: all but README.md.
func pulled(files map[string][]byte) map[string][]byte {
	m := map[string][]byte{}
	for name, b := range files {
		if name != "README.md" {
			m[name] = b
		}
	}
	return m
}

func checkAbsent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (Lstat: %v), want absent", path, err)
	}
}

func TestPull(t *testing.T) {
	h, hub := newHub(t, &fakeHub{})
	dst := filepath.Join(t.TempDir(), "gpt2")
	var events []registry.PullProgress
	if err := hub.Pull(t.Context(), hubRepo, "", dst, func(p registry.PullProgress) { events = append(events, p) }); err != nil {
		t.Fatal(err)
	}
	checkFolder(t, dst, pulled(h.files))
	checkAbsent(t, filepath.Join(filepath.Dir(dst), ".pull-gpt2"))

	// Progress: per file, Done never goes back, ends at the file's size, and comes at least every MiB.
	last := map[string]registry.PullProgress{}
	for _, p := range events {
		prev, ok := last[p.File]
		if ok && p.Done < prev.Done {
			t.Errorf("progress of %s went back from %d to %d", p.File, prev.Done, p.Done)
		}
		if ok && p.Done-prev.Done > 1<<20+256<<10 {
			t.Errorf("progress of %s jumped from %d to %d", p.File, prev.Done, p.Done)
		}
		last[p.File] = p
	}
	for name, b := range pulled(h.files) {
		n := int64(len(b))
		if diff := cmp.Diff(registry.PullProgress{File: name, Done: n, Total: n}, last[name]); diff != "" {
			t.Errorf("last progress of %s (-want +got):\n%s", name, diff)
		}
	}

	// Pulled at main; the rest at the commit config.json came from.
	reqs := h.requests()
	if got, want := reqs[0].Path, "/"+hubRepo+"/resolve/main/config.json"; got != want {
		t.Errorf("first request for %s, want %s", got, want)
	}
	for _, r := range reqs[1:] {
		if !strings.HasPrefix(r.Path, "/cdn/") && !strings.HasPrefix(r.Path, "/"+hubRepo+"/resolve/"+hubCommit+"/") {
			t.Errorf("request for %s, want one at commit %s", r.Path, hubCommit)
		}
		if r.Auth != "" {
			t.Errorf("request for %s has Authorization %q without a token", r.Path, r.Auth)
		}
	}
}

func TestPullRevision(t *testing.T) {
	for _, tc := range []struct {
		rev, want string // want: as in the first URL
	}{
		{"", "main"},
		{"main", "main"},
		{"v1.0", "v1.0"},
		{"refs/pr/1", "refs%2Fpr%2F1"},
		{hubCommit, hubCommit},
	} {
		t.Run("rev="+tc.rev, func(t *testing.T) {
			h, hub := newHub(t, &fakeHub{revs: []string{"main", "v1.0", "refs/pr/1"}})
			dst := filepath.Join(t.TempDir(), "gpt2")
			if err := hub.Pull(t.Context(), hubRepo, tc.rev, dst, nil); err != nil {
				t.Fatal(err)
			}
			checkFolder(t, dst, pulled(h.files))
			if got, want := h.requests()[0].Path, "/"+hubRepo+"/resolve/"+tc.want+"/config.json"; got != want {
				t.Errorf("first request for %s, want %s", got, want)
			}
		})
	}
}

func TestPullAuth(t *testing.T) {
	const token = "hf_secret"
	h := &fakeHub{token: token}
	srv := httptest.NewUnstartedServer(h.init())
	// LFS files redirect to another host, as to the Hub's CDN: Authorization must not follow.
	h.cdn = "http://localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	srv.Start()
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name, token string
		wantErr     error
	}{
		{"token=none", "", registry.ErrUnauthorized},
		{"token=wrong", "hf_wrong", registry.ErrUnauthorized},
		{"token=right", token, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := registry.Hub{Endpoint: srv.URL, Token: tc.token, Client: srv.Client()}
			dst := filepath.Join(t.TempDir(), "gpt2")
			err := hub.Pull(t.Context(), hubRepo, "main", dst, nil)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Pull: %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if tc.token != "" && strings.Contains(err.Error(), tc.token) {
					t.Errorf("error %q shows the token", err)
				}
				checkAbsent(t, dst)
				return
			}
			checkFolder(t, dst, pulled(h.files))
		})
	}
	var cdn int
	for _, r := range h.requests() {
		switch {
		case strings.HasPrefix(r.Path, "/cdn/"):
			cdn++
			if r.Auth != "" {
				t.Errorf("request for %s on the CDN host has Authorization %q", r.Path, r.Auth)
			}
		case r.Auth != "" && r.Auth != "Bearer hf_wrong" && r.Auth != "Bearer "+token:
			t.Errorf("request for %s has Authorization %q", r.Path, r.Auth)
		}
	}
	if cdn == 0 {
		t.Error("no request reached the CDN host")
	}
}

func TestPullNotFound(t *testing.T) {
	for _, tc := range []struct {
		name, repo, rev string
		remove          string // from the Hub's files
		wantMsg         string
	}{
		{name: "repo", repo: "openai-community/gpt3", wantMsg: "config.json"},
		{name: "revision", repo: hubRepo, rev: "v9", wantMsg: "config.json"},
		{name: "file=config.json", repo: hubRepo, remove: "config.json", wantMsg: "config.json"},
		{name: "file=model.safetensors", repo: hubRepo, remove: "model.safetensors", wantMsg: "model.safetensors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := hubFiles()
			delete(files, tc.remove)
			_, hub := newHub(t, &fakeHub{files: files})
			dst := filepath.Join(t.TempDir(), "gpt2")
			err := hub.Pull(t.Context(), tc.repo, tc.rev, dst, nil)
			if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Pull: %v, want %v naming %s", err, registry.ErrNotFound, tc.wantMsg)
			}
			checkAbsent(t, dst)
			checkAbsent(t, filepath.Join(filepath.Dir(dst), ".pull-gpt2"))
		})
	}
}

func TestPullOptionalFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove []string
	}{
		{"none", nil},
		{"bpe-only", []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}},
		{"tokenizer.json-only", []string{"vocab.json", "merges.txt"}},
		// Served in token-ids mode.
		{"no-tokenizer", []string{"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "README.md"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := hubFiles()
			for _, name := range tc.remove {
				delete(files, name)
			}
			h, hub := newHub(t, &fakeHub{files: files})
			dst := filepath.Join(t.TempDir(), "gpt2")
			if err := hub.Pull(t.Context(), hubRepo, "main", dst, nil); err != nil {
				t.Fatal(err)
			}
			checkFolder(t, dst, pulled(h.files))
		})
	}
}

func TestPullNotGPT2(t *testing.T) {
	files := hubFiles()
	files["config.json"] = []byte(`{"model_type": "llama"}`)
	h, hub := newHub(t, &fakeHub{files: files})
	dst := filepath.Join(t.TempDir(), "llama")
	err := hub.Pull(t.Context(), hubRepo, "main", dst, nil)
	if err == nil || !strings.Contains(err.Error(), `"llama"`) {
		t.Fatalf("Pull: %v, want an error naming model_type \"llama\"", err)
	}
	checkAbsent(t, dst)
	checkAbsent(t, filepath.Join(filepath.Dir(dst), ".pull-llama"))
	for _, r := range h.requests() {
		if strings.Contains(r.Path, "safetensors") || strings.HasPrefix(r.Path, "/cdn/") {
			t.Errorf("fetched %s of a model that is not GPT-2", r.Path)
		}
	}
}

func TestPullInvalid(t *testing.T) {
	for _, tc := range []struct{ repo, rev string }{
		{repo: ""},
		{repo: "../x"},
		{repo: "a/b/c"},
		{repo: "a/.."},
		{repo: ".."},
		{repo: "."},
		{repo: "a..b/c"},
		{repo: "/gpt2"},
		{repo: "gpt2/"},
		{repo: "a b/c"},
		{repo: "a/b?c"},
		{repo: "a/b%2Fc"},
		{repo: `a\b`},
		{repo: "a/b", rev: ".."},
		{repo: "a/b", rev: "."},
	} {
		t.Run("repo="+tc.repo+"/rev="+tc.rev, func(t *testing.T) {
			h, hub := newHub(t, &fakeHub{})
			dir := t.TempDir()
			err := hub.Pull(t.Context(), tc.repo, tc.rev, filepath.Join(dir, "gpt2"), nil)
			if !errors.Is(err, registry.ErrInvalidRepo) {
				t.Fatalf("Pull: %v, want %v", err, registry.ErrInvalidRepo)
			}
			if reqs := h.requests(); len(reqs) > 0 {
				t.Errorf("Pull made requests: %v", reqs)
			}
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("Pull left %v", entries)
			}
		})
	}
}

func TestPullDstExists(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(path string) error
	}{
		{"dir", func(path string) error { return os.Mkdir(path, 0o755) }},
		{"file", func(path string) error { return os.WriteFile(path, []byte("x"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, hub := newHub(t, &fakeHub{})
			dst := filepath.Join(t.TempDir(), "gpt2")
			if err := tc.make(dst); err != nil {
				t.Fatal(err)
			}
			if err := hub.Pull(t.Context(), hubRepo, "main", dst, nil); !errors.Is(err, fs.ErrExist) {
				t.Fatalf("Pull: %v, want %v", err, fs.ErrExist)
			}
			if reqs := h.requests(); len(reqs) > 0 {
				t.Errorf("Pull made requests: %v", reqs)
			}
		})
	}
}

// TestPullCorrupt serves model.safetensors wrong once: the pull fails naming it, leaves no dst and
// no .part, and the next pull fetches it afresh.
func TestPullCorrupt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fault   func(w http.ResponseWriter, r *http.Request, data []byte)
		wantMsg string
	}{
		{"sha256", func(w http.ResponseWriter, r *http.Request, data []byte) {
			bad := slices.Clone(data)
			bad[len(bad)/2] ^= 1
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(bad))
		}, "sha256 mismatch"},
		{"longer", func(w http.ResponseWriter, r *http.Request, data []byte) {
			w.Write(data) // no Content-Length: chunked
			w.Write([]byte("more"))
		}, "size mismatch"},
		{"content-length", func(w http.ResponseWriter, r *http.Request, data []byte) {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data[:len(data)-1]))
		}, "X-Linked-Size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, hub := newHub(t, &fakeHub{fault: func(n int, w http.ResponseWriter, r *http.Request, data []byte) bool {
				if n > 0 {
					return false
				}
				tc.fault(w, r, data)
				return true
			}})
			dst := filepath.Join(t.TempDir(), "gpt2")
			err := hub.Pull(t.Context(), hubRepo, "main", dst, nil)
			if err == nil || !strings.Contains(err.Error(), "model.safetensors") || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Pull: %v, want an error naming model.safetensors and %q", err, tc.wantMsg)
			}
			checkAbsent(t, dst)
			checkAbsent(t, filepath.Join(filepath.Dir(dst), ".pull-gpt2", "model.safetensors.part"))

			if err := hub.Pull(t.Context(), hubRepo, "main", dst, nil); err != nil {
				t.Fatalf("Pull again: %v", err)
			}
			checkFolder(t, dst, pulled(h.files))
			for _, r := range h.requests() {
				if r.Range != "" {
					t.Errorf("request for %s has Range %q, want none after a mismatch", r.Path, r.Range)
				}
			}
		})
	}
}

// interruptPull runs a pull that fails half-way through model.safetensors, by the Hub closing the
// connection (abort) or by ctx being cancelled from the progress callback, and returns the length
// of the .part it left.
func interruptPull(t *testing.T, h *fakeHub, hub registry.Hub, dst string, abort bool) int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	progress := func(p registry.PullProgress) {
		if !abort && p.File == "model.safetensors" && p.Done >= 1<<20 {
			cancel()
		}
	}
	err := hub.Pull(ctx, hubRepo, "main", dst, progress)
	if err == nil {
		t.Fatal("interrupted Pull succeeded")
	}
	if !abort && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Pull: %v, want %v", err, context.Canceled)
	}
	checkAbsent(t, dst)
	fi, err := os.Stat(filepath.Join(filepath.Dir(dst), ".pull-gpt2", "model.safetensors.part"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 || fi.Size() >= int64(len(hubWeights)) {
		t.Fatalf("interrupted Pull left %d of %d bytes", fi.Size(), len(hubWeights))
	}
	return fi.Size()
}

// abortHalfWay makes the first CDN response stop half-way, as a dropped connection.
func abortHalfWay(n int, w http.ResponseWriter, r *http.Request, data []byte) bool {
	if n > 0 {
		return false
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.Write(data[:len(data)/2])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

func TestPullResume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		abort bool // else cancel
		// between changes the .part or the Hub before the second pull.
		between   func(t *testing.T, part string, h *fakeHub)
		rev       string                 // of the second pull; "main" when empty
		wantRange func(n int64) []string // of the second pull's CDN requests, given the .part's length
		wantErr   string                 // of the second pull; a third one must succeed
	}{
		{name: "abort", abort: true, wantRange: rangeFrom},
		{name: "cancel", wantRange: rangeFrom},
		{
			// The whole file made it, but not the rename: the Hub answers 416.
			name: "part-complete",
			between: func(t *testing.T, part string, h *fakeHub) {
				appendFile(t, part, hubWeights[fileSize(t, part):])
			},
			wantRange: func(int64) []string { return rangeFrom(int64(len(hubWeights))) },
		},
		{
			name: "part-too-long",
			between: func(t *testing.T, part string, h *fakeHub) {
				appendFile(t, part, append(slices.Clone(hubWeights[fileSize(t, part):]), "junk"...))
			},
			// 416, then from byte 0.
			wantRange: func(int64) []string { return append(rangeFrom(int64(len(hubWeights))+4), "") },
		},
		{
			// The Hub answers 200 to the Range request: start over.
			name: "range-ignored",
			between: func(t *testing.T, part string, h *fakeHub) {
				if err := os.WriteFile(part, make([]byte, fileSize(t, part)), 0o644); err != nil {
					t.Fatal(err)
				}
				h.setIgnoreRange(true)
			},
			wantRange: rangeFrom,
		},
		{
			// The resumed file is hashed whole.
			name: "part-corrupt",
			between: func(t *testing.T, part string, h *fakeHub) {
				b, err := os.ReadFile(part)
				if err != nil {
					t.Fatal(err)
				}
				b[0] ^= 1
				if err := os.WriteFile(part, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantRange: rangeFrom,
			wantErr:   "sha256 mismatch",
		},
		{
			// The temp folder holds a pull of another revision: discarded.
			name:      "other-revision",
			rev:       "v1.0",
			wantRange: func(int64) []string { return []string{""} },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hf := &fakeHub{revs: []string{"main", "v1.0"}}
			if tc.abort {
				hf.fault = abortHalfWay
			}
			h, hub := newHub(t, hf)
			dst := filepath.Join(t.TempDir(), "gpt2")
			interruptPull(t, h, hub, dst, tc.abort)
			part := filepath.Join(filepath.Dir(dst), ".pull-gpt2", "model.safetensors.part")
			if tc.between != nil {
				tc.between(t, part, h)
			}
			n := fileSize(t, part)
			first := len(h.requests())

			rev := tc.rev
			if rev == "" {
				rev = "main"
			}
			err := hub.Pull(t.Context(), hubRepo, rev, dst, nil)
			var ranges []string
			for _, r := range h.requests()[first:] {
				if strings.HasPrefix(r.Path, "/cdn/") {
					ranges = append(ranges, r.Range)
				}
			}
			if diff := cmp.Diff(tc.wantRange(n), ranges); diff != "" {
				t.Errorf("Range of the second pull's CDN requests (-want +got):\n%s", diff)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "model.safetensors") {
					t.Fatalf("second Pull: %v, want an error naming model.safetensors and %q", err, tc.wantErr)
				}
				checkAbsent(t, dst)
				checkAbsent(t, part)
				err = hub.Pull(t.Context(), hubRepo, rev, dst, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			checkFolder(t, dst, pulled(h.files))
			checkAbsent(t, filepath.Dir(part))
		})
	}
}

// rangeFrom is the Range header of one request from byte n on.
func rangeFrom(n int64) []string { return []string{"bytes=" + strconv.FormatInt(n, 10) + "-"} }

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func appendFile(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}
