package nvrtc

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// need skips the test when libnvrtc is missing, unless it runs in CI (env CI set), which
// installs NVRTC and must compile.
func need(t *testing.T) {
	t.Helper()
	err := Available()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but NVRTC does not load: %v", err)
	}
	t.Skipf("NVRTC does not load (apt-get install libnvrtc11.2 libnvrtc-builtins11.8): %v", err)
}

const saxpy = `
extern "C" __global__ void saxpy(float* y, const float* x, float a, int n) {
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n) y[i] += a * x[i];
}
`

func TestVersion(t *testing.T) {
	need(t)
	major, minor, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if major < 11 {
		t.Errorf("NVRTC %d.%d, want 11.2 or later", major, minor)
	}
	t.Logf("NVRTC %d.%d from %s", major, minor, Path())
}

func TestCompilePTX(t *testing.T) {
	need(t)
	ptx, err := CompilePTX([]byte(saxpy), "saxpy.cu", "--gpu-architecture=compute_70", "-default-device")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".version ", ".target sm_70", ".visible .entry saxpy("} {
		if !bytes.Contains(ptx, []byte(want)) {
			t.Errorf("PTX lacks %q:\n%s", want, ptx)
		}
	}
	if bytes.IndexByte(ptx, 0) >= 0 {
		t.Error("PTX contains a NUL byte")
	}
	again, err := CompilePTX([]byte(saxpy), "saxpy.cu", "--gpu-architecture=compute_70", "-default-device")
	if err != nil || !bytes.Equal(ptx, again) {
		t.Errorf("a second compile of the same source differs (err %v)", err)
	}
}

func TestCompileError(t *testing.T) {
	need(t)
	_, err := CompilePTX([]byte("extern \"C\" __global__ void k() { undeclared_name = 1; }\n"), "broken.cu")
	if err == nil {
		t.Fatal("a source with an undeclared name compiled")
	}
	for _, want := range []string{"broken.cu", "undeclared_name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q (the program log)", err, want)
		}
	}
}

func TestCompileCUBIN(t *testing.T) {
	need(t)
	cubin, err := CompileCUBIN([]byte(saxpy), "saxpy.cu", "sm_70")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cubin, []byte("\x7fELF")) {
		t.Errorf("CUBIN does not start with the ELF magic: % x", cubin[:min(8, len(cubin))])
	}
	if _, err := CompileCUBIN([]byte(saxpy), "saxpy.cu", "compute_70"); err == nil {
		t.Error("CompileCUBIN for a virtual architecture succeeded")
	}
}
