package runtime

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
)

// TestHugePages: a memory that starts at 2 MiB or more is backed by huge pages where the
// kernel offers them (the start of a Go-built filter's instance is then a few faults, not
// hundreds), and a small one keeps small pages.
func TestHugePages(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || strings.Contains(string(mode), "[never]") {
		t.Skipf("no transparent huge pages here (%q, %v)", mode, err)
	}
	for _, c := range []struct {
		initial uint64
		huge    bool
	}{{3 << 20, true}, {128 << 10, false}} {
		l := NewMemoryLimiter(16384) // 1 GiB
		m := l.Allocate(c.initial, 1<<32)
		b := m.Reallocate(c.initial)
		for k := 0; k < len(b); k += 4096 {
			b[k] = 1
		}
		kb := anonHugeKB(t, uintptr(unsafe.Pointer(&b[0])))
		if (kb > 0) != c.huge {
			t.Errorf("memory of %d bytes: %d KiB in huge pages, want huge pages %v", c.initial, kb, c.huge)
		}
		m.Free()
	}
}

// anonHugeKB is the AnonHugePages of the mapping of this process that holds addr.
func anonHugeKB(t *testing.T, addr uintptr) int {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 && !strings.HasSuffix(strings.Fields(line)[0], ":") {
			in = lo <= addr && addr < hi
			continue
		}
		var kb int
		if in && strings.HasPrefix(line, "AnonHugePages:") {
			fmt.Sscanf(strings.TrimPrefix(line, "AnonHugePages:"), "%d", &kb)
			return kb
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return 0
}
