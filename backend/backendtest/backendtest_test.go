package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/modeld-dev/modeld/backend"
	"github.com/modeld-dev/modeld/backend/cpu"
)

// Tests of the suite itself: its comparisons, its sentinels, its optional-interface path, and
// that it fails backends with planted bugs.

func TestWithin(t *testing.T) {
	tl := tol{atol: 1e-3, rtol: 1e-2}
	negZero := float32(math.Copysign(0, -1))
	for _, c := range []struct {
		want, got float32
		tl        tol
		ok        bool
	}{
		{1, 1, exact, true},
		{1, 1.0000001, exact, false},
		{0, negZero, exact, true},
		{0, negZero, bitExact, false},
		{nan, nan, exact, true},
		{nan, math.Float32frombits(0x7fc00001), bitExact, false},
		{nan, 1, tl, false},
		{1, nan, tl, false},
		{posInf, posInf, exact, true},
		{posInf, negInf, tl, false},
		{posInf, math.MaxFloat32, tl, false},
		{math.MaxFloat32, posInf, tl, false},
		{100, 101, tl, true},    // 1 <= 1e-3 + 1e-2*100
		{100, 101.1, tl, false}, // 1.1 > 1.001
		{0, 9e-4, tl, true},
		{0, -1.1e-3, tl, false},
	} {
		if got := within(c.want, c.got, c.tl); got != c.ok {
			t.Errorf("within(want %v, got %v, %s) = %t, want %t", c.want, c.got, c.tl, got, c.ok)
		}
	}
}

func TestIndex(t *testing.T) {
	for _, c := range []struct {
		shape []int
		i     int
		want  string
	}{{[]int{2, 3, 4}, 23, "[1,2,3]"}, {[]int{5}, 4, "[4]"}, {[]int{3, 1}, 2, "[2,0]"}} {
		if got := index(c.shape, c.i); got != c.want {
			t.Errorf("index(%v, %d) = %s, want %s", c.shape, c.i, got, c.want)
		}
	}
}

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	errs []string
}

var errFatal = errors.New("recorder: fatal")

func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); panic(errFatal) }
func (r *recorder) Failed() bool                      { return len(r.errs) > 0 }
func (r *recorder) Helper()                           {}
func (r *recorder) Logf(string, ...any)               {}

// TestChecksCatchWrites plants the writes a faulty kernel makes straight into the memory of the
// backend under test and checks that the pair's checks report them.
func TestChecksCatchWrites(t *testing.T) {
	const n = 5
	for _, c := range []struct {
		name    string
		corrupt func(p *pair, x *tensor) // x is an output of n poison elements
		verify  func(p *pair, x *tensor)
		want    string
	}{
		{"tail", func(p *pair, x *tensor) { p.b[dut].Upload(x.full[dut].Slice(lead+n, 1), []float32{0}) },
			func(p *pair, x *tensor) { p.check(x, exact) }, "cpu wrote outside out [5] (sentinel 1234.5 overwritten): [element 5 of the view is 0]"},
		{"last_tail", func(p *pair, x *tensor) { p.b[dut].Upload(x.full[dut].Slice(lead+n+tail-1, 1), []float32{0}) },
			func(p *pair, x *tensor) { p.check(x, exact) }, "element 21 of the view is 0"},
		{"lead", func(p *pair, x *tensor) { p.b[dut].Upload(x.full[dut].Slice(lead-1, 1), []float32{0}) },
			func(p *pair, x *tensor) { p.check(x, exact) }, "element -1 of the view is 0"},
		{"view", func(p *pair, x *tensor) { p.b[dut].Upload(x.view[dut].Slice(2, 1), []float32{7}) },
			func(p *pair, x *tensor) { p.check(x, exact) }, "cpu: out differs from the reference [5]: 1 of 5 elements (atol 0, rtol 0):\n\t[2]: got 7, want -4321.25"},
		{"input", func(p *pair, x *tensor) { p.b[dut].Upload(x.view[dut].Slice(4, 1), []float32{7}) },
			func(p *pair, x *tensor) { p.expectUnchanged(x) }, "cpu modified the input out [5]: 1 of 5 elements (bit-exact):\n\t[4]: got 7"},
	} {
		t.Run("write="+c.name, func(t *testing.T) {
			r := &recorder{TB: t}
			p := newPair(r, func() backend.Backend { return cpu.New() })
			x := p.out("out", n)
			c.corrupt(p, x)
			c.verify(p, x)
			if len(r.errs) != 1 || !strings.Contains(r.errs[0], c.want) {
				t.Errorf("got failures %q, want one containing %q", r.errs, c.want)
			}
		})
	}
}

// TestFlashAttentionPath runs the FlashAttention checks, which the CPU backend alone never
// reaches.
func TestFlashAttentionPath(t *testing.T) {
	testFlashAttention(t, func() backend.Backend { return FlashShim(cpu.New()) })
}

// Mutants: the CPU backend with one planted bug each.

type residualWrites struct{ *cpu.Backend }

// ResidualBackward writes dout into da and db instead of adding it.
func (b residualWrites) ResidualBackward(da, db, dout backend.Buffer, n int) {
	b.Copy(da, dout)
	b.Copy(db, dout)
}

type matmulNoBias struct{ *cpu.Backend }

// MatmulForward drops the bias.
func (b matmulNoBias) MatmulForward(out, inp, weight, bias backend.Buffer, N, C, OC int) {
	b.Backend.MatmulForward(out, inp, weight, nil, N, C, OC)
}

type attentionTwice struct{ *cpu.Backend }

// AttentionBackward adds the gradient twice.
func (b attentionTwice) AttentionBackward(dqkv, dout, qkv, att backend.Buffer, B, T, C, NH int) {
	b.Backend.AttentionBackward(dqkv, dout, qkv, att, B, T, C, NH)
	b.Backend.AttentionBackward(dqkv, dout, qkv, att, B, T, C, NH)
}

type crossEntropyAdds struct{ *cpu.Backend }

// CrossEntropyBackward adds into dlogits instead of writing it.
func (b crossEntropyAdds) CrossEntropyBackward(dlogits, probs, targets backend.Buffer, N, V int, scale float32) {
	tmp, _ := b.Alloc(backend.F32, N*V)
	b.Backend.CrossEntropyBackward(tmp, probs, targets, N, V, scale)
	b.ResidualForward(dlogits, dlogits, tmp, N*V)
}

type adamWNoScale struct{ *cpu.Backend }

// AdamWUpdate ignores GradScale.
func (b adamWNoScale) AdamWUpdate(params, grads, m, v backend.Buffer, n int, hp backend.AdamW) {
	hp.GradScale = 1
	b.Backend.AdamWUpdate(params, grads, m, v, n, hp)
}

type cachedSorted struct{ *cpu.Backend }

// CachedAttention sorts each block table: it ignores the table's order.
func (b cachedSorted) CachedAttention(out, qkv backend.Buffer, cache backend.KVCache, seqs []backend.CachedSeq, C, NH int) {
	seqs = cloneSeqs(seqs)
	for _, s := range seqs {
		slices.Sort(s.Blocks)
	}
	b.Backend.CachedAttention(out, qkv, cache, seqs, C, NH)
}

type forgetful struct {
	*cpu.Backend
	told bool
}

// Sync returns the first error once, then nil: not sticky.
func (b *forgetful) Sync(ctx context.Context) error {
	if b.told {
		return nil
	}
	err := b.Backend.Sync(ctx)
	b.told = err != nil
	return err
}

// mutants lists each planted bug, the subtests of RunAll that run on it (a -test.run pattern
// below TestMutant), and the subtest that must fail.
var mutants = []struct {
	name string
	open func() backend.Backend
	run  string
	fail string
}{
	{"residual_backward_writes", func() backend.Backend { return residualWrites{cpu.New()} },
		"kernel=residual_backward/n=17", "kernel=residual_backward/n=17"},
	{"matmul_forward_drops_bias", func() backend.Backend { return matmulNoBias{cpu.New()} },
		"kernel=matmul_forward/n=3/c=17", "kernel=matmul_forward/n=3/c=17/oc=33/bias=true"},
	{"attention_backward_twice", func() backend.Backend { return attentionTwice{cpu.New()} },
		"check=finite_difference/backend=under_test/kernel=attention",
		"check=finite_difference/backend=under_test/kernel=attention/b=2/t=5/c=6/nh=2"},
	{"crossentropy_backward_adds", func() backend.Backend { return crossEntropyAdds{cpu.New()} },
		"kernel=crossentropy_backward/n=3/v=17/alias=false", "kernel=crossentropy_backward/n=3/v=17/alias=false"},
	{"adamw_ignores_grad_scale", func() backend.Backend { return adamWNoScale{cpu.New()} },
		"kernel=adamw_update/n=17/weight_decay=0/grad_scale=0.37",
		"kernel=adamw_update/n=17/weight_decay=0/grad_scale=0.37/steps=5"},
	{"cached_attention_sorts_blocks", func() backend.Backend { return cachedSorted{cpu.New()} },
		"kernel=cached_attention/c=48/nh=3/block_size=4", "kernel=cached_attention/c=48/nh=3/block_size=4"},
	{"error_not_sticky", func() backend.Backend { return &forgetful{Backend: cpu.New()} },
		"check=sticky_error/kernel=gelu_forward", "check=sticky_error/kernel=gelu_forward/bad=n"},
}

// mutantEnv names the mutant that TestMutant runs RunAll on, in a child process.
const mutantEnv = "BACKENDTEST_MUTANT"

// TestMutant runs RunAll on the mutant named by $BACKENDTEST_MUTANT; it is the child process of
// TestSuiteCatchesBugs and skips otherwise.
func TestMutant(t *testing.T) {
	name := os.Getenv(mutantEnv)
	if name == "" {
		t.Skip("runs as the child process of TestSuiteCatchesBugs")
	}
	for _, m := range mutants {
		if m.name == name {
			RunAll(t, m.open)
			return
		}
	}
	t.Fatalf("unknown mutant %q", name)
}

// TestSuiteCatchesBugs runs the subtests of RunAll that should catch each planted bug, in a child
// process (a failing subtest cannot be expected in process), and checks that they fail.
func TestSuiteCatchesBugs(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot find the test binary: %v", err)
	}
	for _, m := range mutants {
		t.Run("mutant="+m.name, func(t *testing.T) {
			pattern := "^TestMutant$"
			for _, level := range strings.Split(m.run, "/") {
				pattern += "/^" + level + "$"
			}
			cmd := exec.CommandContext(t.Context(), exe, "-test.run="+pattern, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("RunAll passed the mutant:\n%s", out)
			}
			if want := "--- FAIL: TestMutant/" + m.fail + " "; !bytes.Contains(out, []byte(want)) {
				t.Errorf("the output lacks %q:\n%s", want, out)
			}
		})
	}
}
