package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Errors returned by [Hub.Pull], wrapped with the repo and file concerned; test them with [errors.Is].
var (
	// ErrNotFound means the repo, the revision or a required file is missing (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized means the repo is gated or private and the token is missing or wrong (HTTP 401
	// or 403).
	// The Hub also answers 401 for a repo that does not exist when no token is sent.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrInvalidRepo means the repo name is not "name" or "owner/name" of [A-Za-z0-9._-], or the revision is "." or "..".
	ErrInvalidRepo = errors.New("invalid repo")
)

// PullProgress reports a download in progress.
type PullProgress struct {
	File        string // e.g. "model.safetensors"
	Done, Total int64  // bytes; Total -1 when unknown
}

// Hub is where models are pulled from: the Hugging Face Hub or a mirror serving the same
// /{repo}/resolve/{revision}/{file} URLs. The zero Hub pulls anonymously from https://huggingface.co.
type Hub struct {
	Endpoint string       // "https://huggingface.co" when empty (HF_ENDPOINT overrides in cmd)
	Token    string       // HF_TOKEN; sent as "Authorization: Bearer ..." when set, never logged nor put in errors
	Client   *http.Client // nil: http.DefaultClient
}

// pullFile is a file of a model folder, in the order Pull fetches them: config.json first so that
// a missing, private or non-GPT-2 repo fails before gigabytes of weights.
type pullFile struct {
	name     string
	required bool
}

// pullFiles is what Pull fetches. The tokenizer comes as vocab.json + merges.txt (GPT-2's own files)
// and/or tokenizer.json (transformers' fast tokenizer); all three are optional because a folder with
// neither form is still servable, in token-ids mode. README.md and other weight formats are skipped.
var pullFiles = []pullFile{
	{"config.json", true},
	{"generation_config.json", false},
	{"vocab.json", false},
	{"merges.txt", false},
	{"tokenizer.json", false},
	{"tokenizer_config.json", false},
	{"special_tokens_map.json", false},
	{"model.safetensors", true},
}

const (
	pullDefaultEndpoint = "https://huggingface.co"
	pullMarkerName      = ".pull.json" // in the temp folder: what it is a pull of
	pullProgressEvery   = 1 << 20      // bytes between progress reports
)

// pullMarker records which pull a temp folder holds, so that a resume continues the same snapshot.
type pullMarker struct {
	Repo     string `json:"repo"`
	Revision string `json:"revision"`
	Commit   string `json:"commit,omitempty"` // from X-Repo-Commit; pins the files that follow
}

// Pull downloads repo (e.g. "openai-community/gpt2") at revision ("main" if empty) into the folder
// dst, which must not exist yet. progress, if not nil, is called on Pull's goroutine at least every
// MiB of each file and at each file's end.
//
// Pull fetches config.json and model.safetensors (required), the tokenizer files (vocab.json,
// merges.txt, tokenizer.json; a repo with none of them is still pulled and will be served in
// token-ids mode) and generation_config.json, tokenizer_config.json and special_tokens_map.json
// (optional: a 404 skips them). config.json must have model_type "gpt2"; it is checked before the
// weights are fetched. The revision is resolved to the commit the Hub names in X-Repo-Commit on the
// first file, and the other files are fetched at that commit, so the folder is one snapshot.
//
// Files are written into the temp folder .pull-<base(dst)> beside dst, each as <file>.part until it
// is complete and verified: its size against X-Linked-Size or Content-Length (Content-Range on a
// resume), its sha256 against X-Linked-Etag when that is one (LFS files). A mismatch deletes the
// .part and fails naming the file. The temp folder is then renamed to dst; Pull fails if dst has
// appeared meanwhile. The temp folder is kept on failures a retry can get past (network errors,
// cancellation of ctx, 401/403, 5xx, dst existing), and a later Pull of the same repo and revision
// to the same dst resumes it with Range requests; a temp folder from another pull is discarded. It
// is removed when the repo cannot be served (a required file missing, not GPT-2). Concurrent pulls
// to the same dst are not supported.
//
// Errors wrap [ErrInvalidRepo], [ErrNotFound], [ErrUnauthorized], [fs.ErrExist] (dst exists), or
// ctx's error when ctx is done.
func (h Hub) Pull(ctx context.Context, repo, revision, dst string, progress func(PullProgress)) error {
	if err := pullCheckRepo(repo); err != nil {
		return err
	}
	if revision == "" {
		revision = "main"
	}
	if revision == "." || revision == ".." {
		return fmt.Errorf("registry: pull %s: revision %q: %w", repo, revision, ErrInvalidRepo)
	}
	if err := pullRun(ctx, h, repo, revision, filepath.Clean(dst), progress); err != nil {
		return fmt.Errorf("registry: pull %s@%s: %w", repo, revision, err)
	}
	return nil
}

// puller is one call of Pull.
type puller struct {
	hub      Hub
	client   *http.Client
	endpoint string
	dir      string // the temp folder
	marker   pullMarker
	done     map[string]bool // files complete in dir
	progress func(PullProgress)
}

// pullRun is Pull once repo and revision are checked.
func pullRun(ctx context.Context, h Hub, repo, revision, dst string, progress func(PullProgress)) error {
	if err := pullCheckAbsent(dst); err != nil {
		return err
	}
	p := &puller{
		hub:      h,
		client:   h.Client,
		endpoint: strings.TrimRight(h.Endpoint, "/"),
		dir:      filepath.Join(filepath.Dir(dst), ".pull-"+filepath.Base(dst)),
		marker:   pullMarker{Repo: repo, Revision: revision},
		done:     map[string]bool{},
		progress: progress,
	}
	if p.client == nil {
		p.client = http.DefaultClient
	}
	if p.endpoint == "" {
		p.endpoint = pullDefaultEndpoint
	}
	if err := p.openDir(); err != nil {
		return err
	}
	for _, f := range pullFiles {
		err := p.fetch(ctx, f)
		if err == nil && f.name == "config.json" {
			err = pullCheckConfig(filepath.Join(p.dir, f.name))
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%s: %w", f.name, ctx.Err())
			}
			var unservable *pullUnservableError
			if errors.Is(err, ErrNotFound) || errors.As(err, &unservable) {
				os.RemoveAll(p.dir) // a retry at this commit cannot succeed
			}
			return err
		}
	}
	// Keep the marker until dst is known to be free, so that the temp folder stays resumable.
	if err := pullCheckAbsent(dst); err != nil {
		return err
	}
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !p.done[e.Name()] { // the marker, .part files of optional files gone meanwhile
			if err := os.RemoveAll(filepath.Join(p.dir, e.Name())); err != nil {
				return err
			}
		}
	}
	// On Linux, a dst that appeared since the check above makes Rename fail unless it is an empty
	// folder, which Rename then replaces: no data can be lost.
	if err := os.Rename(p.dir, dst); err != nil {
		return fmt.Errorf("move into place: %w", err)
	}
	return nil
}

// openDir creates the temp folder, or reuses it when it holds a pull of the same repo and revision.
func (p *puller) openDir() error {
	path := filepath.Join(p.dir, pullMarkerName)
	var m pullMarker
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &m) == nil &&
		m.Repo == p.marker.Repo && m.Revision == p.marker.Revision {
		if pullIsHex(m.Commit, 40) {
			p.marker.Commit = m.Commit
		}
		return nil
	}
	// Absent, or holding something else: start afresh.
	if err := os.RemoveAll(p.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return err
	}
	return p.writeMarker()
}

func (p *puller) writeMarker() error {
	b, err := json.Marshal(p.marker)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(p.dir, pullMarkerName), b, 0o644)
}

// fetch downloads f into the temp folder: into f.name+".part", resuming from what it holds, then
// verified and renamed to f.name. A file already there from an earlier pull is kept.
func (p *puller) fetch(ctx context.Context, f pullFile) error {
	final := filepath.Join(p.dir, f.name)
	if fi, err := os.Stat(final); err == nil {
		p.done[f.name] = true
		p.report(f.name, fi.Size(), fi.Size())
		return nil
	}
	part := final + ".part"
	var offset int64 // bytes of part kept
	if fi, err := os.Stat(part); err == nil {
		offset = fi.Size()
	}
	resp, err := p.get(ctx, f.name, offset)
	if err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	defer resp.Body.Close()

	want := int64(-1) // the file's size, when known
	if s := pullHeader(resp, "X-Linked-Size"); s != "" {
		if want, err = strconv.ParseInt(s, 10, 64); err != nil || want < 0 {
			return fmt.Errorf("%s: bad X-Linked-Size %q", f.name, s)
		}
	}
	// total is the file's size as the final response gives it, -1 when unknown.
	body, total := io.Reader(resp.Body), int64(-1)
	switch code := resp.StatusCode; code {
	case http.StatusOK: // the whole file: the server ignored Range, or none was sent
		offset, total = 0, resp.ContentLength
	case http.StatusPartialContent:
		first, n, ok := pullContentRange(resp.Header.Get("Content-Range"))
		if !ok || first != offset {
			return fmt.Errorf("%s: HTTP 206 with Content-Range %q for a request from byte %d",
				f.name, resp.Header.Get("Content-Range"), offset)
		}
		total = n
	case http.StatusRequestedRangeNotSatisfiable: // part may already be whole
		_, n, _ := pullContentRange(resp.Header.Get("Content-Range"))
		size := want
		if size < 0 {
			size = n
		}
		if offset == 0 || size != offset { // unknown size, or part is longer: start over
			if offset == 0 {
				return fmt.Errorf("%s: HTTP 416 for a request without Range", f.name)
			}
			resp.Body.Close()
			if err := os.Remove(part); err != nil {
				return err
			}
			return p.fetch(ctx, f) // from byte 0, so without Range: no 416 again
		}
		body, total = http.NoBody, size
	case http.StatusUnauthorized, http.StatusForbidden:
		hint := ""
		if p.hub.Token == "" {
			hint = "; no token set (HF_TOKEN)"
		}
		return fmt.Errorf("%s: %w (HTTP %d%s%s)", f.name, ErrUnauthorized, code, pullMessage(resp), hint)
	case http.StatusNotFound:
		if !f.required {
			os.Remove(part) // from a snapshot that had it
			return nil
		}
		return fmt.Errorf("%s: %w (HTTP 404%s)", f.name, ErrNotFound, pullMessage(resp))
	default:
		return fmt.Errorf("%s: HTTP %d%s", f.name, code, pullMessage(resp))
	}
	if want < 0 {
		want = total
	} else if total >= 0 && total != want {
		return fmt.Errorf("%s: response is %d bytes, but X-Linked-Size says %d", f.name, total, want)
	}
	if p.marker.Commit == "" {
		if c := pullHeader(resp, "X-Repo-Commit"); pullIsHex(c, 40) {
			p.marker.Commit = c
			if err := p.writeMarker(); err != nil {
				return err
			}
		}
	}
	var sum hash.Hash
	wantSum := strings.Trim(strings.TrimPrefix(pullHeader(resp, "X-Linked-Etag"), "W/"), `"`)
	if pullIsHex(wantSum, 64) {
		sum = sha256.New()
	}

	if err := p.write(ctx, f.name, part, offset, want, body, sum); err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	fi, err := os.Stat(part)
	if err != nil {
		return err
	}
	switch size := fi.Size(); {
	case want >= 0 && size < want: // the body ended early but cleanly: keep it for a resume
		return fmt.Errorf("%s: truncated: got %d of %d bytes", f.name, size, want)
	case want >= 0 && size > want:
		os.Remove(part)
		return fmt.Errorf("%s: size mismatch: got more than %d bytes", f.name, want)
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != strings.ToLower(wantSum) {
			os.Remove(part)
			return fmt.Errorf("%s: sha256 mismatch: got %s, want %s", f.name, got, wantSum)
		}
	}
	if err := os.Rename(part, final); err != nil {
		return err
	}
	p.done[f.name] = true
	p.report(f.name, fi.Size(), fi.Size())
	return nil
}

// get requests file, from byte offset on when offset > 0.
func (p *puller) get(ctx context.Context, file string, offset int64) (*http.Response, error) {
	rev := p.marker.Revision
	if p.marker.Commit != "" {
		rev = p.marker.Commit
	}
	u := p.endpoint + "/" + p.marker.Repo + "/resolve/" + url.PathEscape(rev) + "/" + file
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	// Byte offsets must count the file's own bytes: no transparent gzip.
	req.Header.Set("Accept-Encoding", "identity")
	req.Header.Set("User-Agent", "modeld")
	if p.hub.Token != "" {
		// Go's client drops it on a redirect to another host (the Hub's CDN): keep it that way,
		// with no CheckRedirect that would copy it.
		req.Header.Set("Authorization", "Bearer "+p.hub.Token)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	return p.client.Do(req)
}

// write puts body into part from byte offset on, reading at most the want-offset bytes expected
// (plus one, to notice a longer body) when want >= 0. sum, when not nil, gets the whole file:
// part's first offset bytes, then body.
func (p *puller) write(ctx context.Context, file, part string, offset, want int64, body io.Reader, sum hash.Hash) error {
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(offset); err != nil {
		return err
	}
	w := io.Writer(f)
	if sum != nil {
		if _, err := io.CopyN(sum, f, offset); err != nil {
			return fmt.Errorf("hash the %d bytes already there: %w", offset, err)
		}
		w = io.MultiWriter(f, sum)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return err
	}
	if want >= 0 {
		body = io.LimitReader(body, max(want-offset, 0)+1)
	}
	done, reported := offset, offset
	p.report(file, done, want)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			done += int64(n)
			if done-reported >= pullProgressEvery {
				p.report(file, done, want)
				reported = done
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func (p *puller) report(file string, done, total int64) {
	if p.progress != nil {
		p.progress(PullProgress{File: file, Done: done, Total: total})
	}
}

// pullUnservableError is a folder that is not a GPT-2 model.
type pullUnservableError struct{ msg string }

func (e *pullUnservableError) Error() string { return e.msg }

// pullCheckConfig checks lightly that config.json is a GPT-2 config; the model package checks the
// rest on load.
func pullCheckConfig(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c struct {
		ModelType string `json:"model_type"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return &pullUnservableError{fmt.Sprintf("config.json: %v", err)}
	}
	if c.ModelType != "gpt2" {
		return &pullUnservableError{fmt.Sprintf("config.json: model_type %q, want \"gpt2\"", c.ModelType)}
	}
	return nil
}

// pullCheckRepo checks that repo is "name" or "owner/name", each of [A-Za-z0-9._-] and none "." or
// containing "..": safe to put in a URL path as is.
func pullCheckRepo(repo string) error {
	segs := strings.Split(repo, "/")
	ok := repo != "" && len(segs) <= 2
	for _, s := range segs {
		if s == "" || s == "." || strings.Contains(s, "..") {
			ok = false
		}
		for _, c := range s {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				ok = false
			}
		}
	}
	if !ok {
		return fmt.Errorf("registry: pull %q: %w", repo, ErrInvalidRepo)
	}
	return nil
}

// pullCheckAbsent fails wrapping fs.ErrExist if path exists.
func pullCheckAbsent(path string) error {
	_, err := os.Lstat(path)
	switch {
	case err == nil:
		return fmt.Errorf("%s: %w", path, fs.ErrExist)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	default:
		return err
	}
}

// pullHeader returns key's value on the earliest response of resp's redirect chain that has it: the
// Hub sets X-Linked-Size, X-Linked-Etag and X-Repo-Commit on its own response, which redirects LFS
// files to a CDN.
func pullHeader(resp *http.Response, key string) string {
	v := ""
	for r := resp; r != nil; {
		if s := r.Header.Get(key); s != "" {
			v = s
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response
	}
	return v
}

// pullMessage returns the Hub's X-Error-Message, if any, as ": message", shortened.
func pullMessage(resp *http.Response) string {
	m := resp.Header.Get("X-Error-Message")
	if m == "" {
		return ""
	}
	if len(m) > 200 {
		m = m[:200] + "..."
	}
	return ": " + m
}

// pullContentRange parses a Content-Range header: "bytes first-last/total" or "bytes */total".
// first is -1 in the second form, total is -1 when it is "*".
func pullContentRange(s string) (first, total int64, ok bool) {
	rng, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, size, ok := strings.Cut(rng, "/")
	if !ok {
		return 0, 0, false
	}
	total = -1
	if size != "*" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return 0, 0, false
		}
		total = n
	}
	if rng == "*" {
		return -1, total, true
	}
	a, _, ok := strings.Cut(rng, "-")
	first, err := strconv.ParseInt(a, 10, 64)
	if !ok || err != nil || first < 0 {
		return 0, 0, false
	}
	return first, total, true
}

// pullIsHex reports whether s is n hex digits.
func pullIsHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
