package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	modeldv1 "github.com/modeld-dev/modeld/proto/modeld/v1"
)

const modelsAbout = `Manage the server's models.

  list            table of every model: name, state, parameters, layers/embedding width,
                  tokenizer, size on disk (the default action)
  get NAME        everything the server knows about a model
  load NAME       load a model onto the server's backend; returns when it serves
  unload NAME     free a model's device memory; its files stay
  pull REPO       download REPO ("owner/name") from the Hugging Face Hub into the server's models
                  directory, showing each file's progress on stderr; flags --revision, --name`

// models implements "modelcli models": the action is the first argument.
func (c *cli) models(ctx context.Context, args []string) error {
	fs := c.flagSet("models", "list|get NAME|load NAME|unload NAME|pull REPO [--revision R] [--name N]", modelsAbout)
	if err := fs.Parse(args); err != nil {
		return parseError(err)
	}
	action, args := "list", fs.Args()
	if len(args) > 0 {
		action, args = args[0], args[1:]
	}
	switch action {
	case "list", "get", "load", "unload", "pull":
	default:
		return usagef("models: unknown action %q: want list, get, load, unload or pull", action)
	}

	fs = c.flagSet("models "+action, map[string]string{
		"list": "", "get": "NAME", "load": "NAME", "unload": "NAME", "pull": "REPO [--revision R] [--name N]",
	}[action], modelsAbout)
	revision := fs.String("revision", "", "pull: branch, tag or commit to download (default main)")
	name := fs.String("name", "", "pull: local name of the model (default: the last element of REPO)")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	want := 1
	if action == "list" {
		want = 0
	}
	if len(pos) != want {
		return usagef("models %s: want %d argument(s), got %d; run 'modelcli models -h'", action, want, len(pos))
	}
	if action != "pull" && (*revision != "" || *name != "") {
		return usagef("models %s: --revision and --name are for pull", action)
	}

	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := c.callContext(ctx)
	defer cancel()
	ms := modeldv1.NewModelServiceClient(conn)

	switch action {
	case "list":
		resp, err := ms.ListModels(ctx, &modeldv1.ListModelsRequest{})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		return printModelTable(c.stdout, resp.GetModels())
	case "get":
		resp, err := ms.GetModel(ctx, &modeldv1.GetModelRequest{Name: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		return printModel(c.stdout, resp.GetModel())
	case "load":
		start := time.Now()
		resp, err := ms.LoadModel(ctx, &modeldv1.LoadModelRequest{Name: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		_, err = fmt.Fprintf(c.stdout, "%s: %s (%s)\n", resp.GetModel().GetName(), stateName(resp.GetModel().GetState()), fmtDuration(time.Since(start)))
		return err
	case "unload":
		resp, err := ms.UnloadModel(ctx, &modeldv1.UnloadModelRequest{Name: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		_, err = fmt.Fprintf(c.stdout, "%s: %s\n", resp.GetModel().GetName(), stateName(resp.GetModel().GetState()))
		return err
	}
	return c.pull(ctx, ms, &modeldv1.PullModelRequest{Repo: pos[0], Revision: *revision, Name: *name})
}

// pull runs PullModel, showing the progress of each file on stderr (json: one line per message
// on stdout).
func (c *cli) pull(ctx context.Context, ms modeldv1.ModelServiceClient, req *modeldv1.PullModelRequest) error {
	stream, err := ms.PullModel(ctx, req)
	if err != nil {
		return err
	}
	p := &progress{w: c.stderr, tty: isTerminal(c.stderr)}
	defer p.finish()
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the pull ended without its final message")
		}
		if err != nil {
			return err
		}
		if c.json() {
			if err := c.printJSON(resp); err != nil {
				return err
			}
		} else if !resp.GetDone() {
			p.update(resp)
		}
		if resp.GetDone() {
			if c.json() {
				return nil
			}
			p.finish()
			m := resp.GetModel()
			_, err := fmt.Fprintf(c.stdout, "pulled %s as %s: %s parameters, %s\n", req.GetRepo(), m.GetName(), fmtCount(m.GetNumParameters()), fmtBytes(m.GetSizeBytes()))
			return err
		}
	}
}

// progress shows the download of one file after another. On a terminal it redraws the file's
// line with '\r'; elsewhere it writes one line per file once the file is done.
type progress struct {
	w           io.Writer
	tty         bool
	file        string
	done, total uint64
}

func (p *progress) update(m *modeldv1.PullModelResponse) {
	if m.GetFile() != p.file {
		p.finish()
	}
	p.file, p.done, p.total = m.GetFile(), m.GetBytesDone(), m.GetBytesTotal()
	if p.tty {
		fmt.Fprintf(p.w, "\r%s", p.line())
	}
}

// finish ends the current file's line.
func (p *progress) finish() {
	if p.file == "" {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\n", p.line())
	} else {
		fmt.Fprintln(p.w, p.line())
	}
	p.file = ""
}

func (p *progress) line() string {
	if p.total == 0 {
		return fmt.Sprintf("%-24s %10s", p.file, fmtBytes(p.done))
	}
	pct := min(p.done*100/p.total, 100)
	bar := ""
	if p.tty {
		bar = "[" + strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5)) + "] "
	}
	return fmt.Sprintf("%-24s %s%10s / %-10s %3d%%", p.file, bar, fmtBytes(p.done), fmtBytes(p.total), pct)
}

// printModelTable writes the models as a table.
func printModelTable(w io.Writer, models []*modeldv1.Model) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPARAMS\tLAYERS/EMBD\tTOKENIZER\tSIZE")
	for _, m := range models {
		cfg := m.GetConfig()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", m.GetName(), stateName(m.GetState()), fmtCount(m.GetNumParameters()),
			cfg.GetNLayer(), cfg.GetNEmbd(), yesNo(m.GetHasTokenizer()), fmtBytes(m.GetSizeBytes()))
	}
	return tw.Flush()
}

// printModel writes everything about a model, one field a line.
func printModel(w io.Writer, m *modeldv1.Model) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	cfg := m.GetConfig()
	fmt.Fprintf(tw, "name:\t%s\n", m.GetName())
	fmt.Fprintf(tw, "state:\t%s\n", stateName(m.GetState()))
	if m.GetError() != "" {
		fmt.Fprintf(tw, "error:\t%s\n", m.GetError())
	}
	fmt.Fprintf(tw, "parameters:\t%d (%s)\n", m.GetNumParameters(), fmtCount(m.GetNumParameters()))
	fmt.Fprintf(tw, "config:\tn_layer=%d n_head=%d n_embd=%d n_positions=%d vocab_size=%d\n",
		cfg.GetNLayer(), cfg.GetNHead(), cfg.GetNEmbd(), cfg.GetNPositions(), cfg.GetVocabSize())
	fmt.Fprintf(tw, "tokenizer:\t%s\n", yesNo(m.GetHasTokenizer()))
	fmt.Fprintf(tw, "size:\t%s (%d bytes)\n", fmtBytes(m.GetSizeBytes()), m.GetSizeBytes())
	fmt.Fprintf(tw, "source:\t%s\n", m.GetSource())
	if m.GetLoadTime() != nil {
		fmt.Fprintf(tw, "loaded at:\t%s\n", m.GetLoadTime().AsTime().Local().Format(time.RFC3339))
	}
	return tw.Flush()
}

func stateName(s modeldv1.ModelState) string { return enumName(s.String(), "MODEL_STATE_") }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// fmtCount writes a count with an SI suffix: 136.2K, 124.4M.
func fmtCount(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// fmtBytes writes a size in bytes with an IEC suffix: 534.6KiB, 474.7MiB.
func fmtBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f%ciB", v, units[i])
}
