package proxywasm

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/plexus-mesh/plexus/runtime/internal/interrupt"
)

// VMs, as Envoy has them (runtime/RATIONALE.md, "One VM, many instances").
//
// Plugins that share a vm_id, a module and a VM configuration share a VM: it starts once
// (proxy_on_vm_start runs once), and each plugin has its own root context in it, with an
// id no other plugin of the VM has. A plugin's instances are copies of the VM as
// proxy_on_vm_start left it: the first instance of the VM runs _initialize and
// proxy_on_vm_start, and its memory and globals are kept (an image); every later instance,
// of any of the VM's plugins, whether the pool grows or replaces a failed instance, starts
// from that image instead, and only creates and configures its plugin's root context. So
// what proxy_on_vm_start does (shared data it sets, say) happens once, as in Envoy, and not
// again as the pool grows.
//
// Copying needs the module's globals in reach, which the interrupt rewrite exports
// (interrupt.GlobalExport), or interrupt.ExportGlobals for a filter without a callback
// deadline. For a module neither can read, or with a mutable global the host cannot copy
// (a reference, a vector), every instance starts its own VM, as before, and the plugin
// logs why once.

// vmKey names a VM: its vm_id, its module's digest and its VM configuration.
type vmKey struct{ id, digest, config string }

// vm is the state plugins of one VM share, in Runtime.vms while a plugin uses it.
type vm struct {
	key   vmKey
	refs  int    // plugins using it; under Runtime.mu
	roots uint32 // root context ids handed out; under Runtime.mu

	mu      sync.Mutex // held by the instance starting the VM
	started bool       // proxy_on_vm_start has run in an instance that made the image
	img     *image
}

// image is an instance's state right after proxy_on_vm_start: its memory, by 4 KiB chunk
// (nil for a chunk of zeros), and its mutable globals.
type image struct {
	pages   [][]byte
	fresh   []int // the chunks a new instance's data segments write: nonzero before it starts
	globals []imageGlobal
	root    uint32 // the root context created before proxy_on_vm_start: the image holds it
}

type imageGlobal struct {
	name string
	val  uint64
}

const (
	pageSize  = 65536 // a Wasm page
	chunkSize = 4096  // the image's unit: a page of the host's, as the guest touches them
)

// acquireVM returns the VM of key for a new plugin, and the root context id it gives the
// plugin.
func (r *Runtime) acquireVM(key vmKey) (*vm, uint32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := r.vms[key]
	if v == nil {
		v = &vm{key: key}
		r.vms[key] = v
	}
	v.refs++
	v.roots++
	return v, v.roots
}

// releaseVM lets go of a plugin's VM: with the last plugin, the VM and its image are gone,
// and a plugin loaded later starts a new one.
func (r *Runtime) releaseVM(v *vm) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v.refs--
	if v.refs == 0 && r.vms[v.key] == v {
		delete(r.vms, v.key)
	}
}

// capture takes the image of an instance of a copyable plugin: its memory and its mutable
// globals, which must be of numeric types. fresh is nonzeroChunks of the instance before it started.
func capture(mod api.Module, root uint32, fresh []int) (*image, error) {
	img := &image{root: root, fresh: fresh}
	im, ok := mod.(experimental.InternalModule)
	if !ok {
		return nil, errors.New("wazero does not show the module's globals")
	}
	for g := range im.NumGlobal() {
		name := interrupt.GlobalExport + strconv.Itoa(g)
		mg, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			continue // imported, constant, or the rewrite's own
		}
		switch mg.Type() {
		case api.ValueTypeI32, api.ValueTypeI64, api.ValueTypeF32, api.ValueTypeF64:
		default:
			return nil, fmt.Errorf("global %d is a mutable %s, which the host cannot copy", g, api.ValueTypeName(mg.Type()))
		}
		img.globals = append(img.globals, imageGlobal{name, mg.Get()})
	}
	mem := mod.Memory()
	buf, _ := mem.Read(0, mem.Size())
	img.pages = make([][]byte, len(buf)/chunkSize)
	for _, k := range nonzeroChunks(mem) {
		img.pages[k] = append([]byte(nil), buf[k*chunkSize:(k+1)*chunkSize]...)
	}
	return img, nil
}

// nonzeroChunks lists the chunks of an instance's memory that hold anything.
func nonzeroChunks(mem api.Memory) []int {
	buf, _ := mem.Read(0, mem.Size())
	var nz []int
	for k := range len(buf) / chunkSize {
		if !zeros(buf[k*chunkSize : (k+1)*chunkSize]) {
			nz = append(nz, k)
		}
	}
	return nz
}

// restore makes a new instance's memory and globals those of the image.
func (img *image) restore(mod api.Module) error {
	mem := mod.Memory()
	if have, want := mem.Size()/pageSize, uint32(len(img.pages)*chunkSize/pageSize); have < want {
		if _, ok := mem.Grow(want - have); !ok {
			return fmt.Errorf("the VM's memory of %d pages does not fit the instance's limit", want)
		}
	}
	// Only what the data segments wrote, and what the image holds, is written: touching
	// the rest would have the kernel hand out pages of zeros that no one asked for.
	buf, _ := mem.Read(0, mem.Size())
	for _, k := range img.fresh {
		if k >= len(img.pages) || img.pages[k] == nil {
			clear(buf[k*chunkSize : (k+1)*chunkSize])
		}
	}
	for k, page := range img.pages {
		if page != nil {
			copy(buf[k*chunkSize:(k+1)*chunkSize], page)
		}
	}
	for _, g := range img.globals {
		mg, ok := mod.ExportedGlobal(g.name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("the instance has no global %s", g.name)
		}
		mg.Set(g.val)
	}
	return nil
}

func zeros(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ticker is a plugin's tick (proxy_set_tick_period_milliseconds): its root context's, once
// per period, whichever of its instances set it, and not once per instance. Each tick
// goes to one of the instances that asked for ticks (set a period and did not set it back
// to zero since), in turn, an idle one first, as queue items do.
type ticker struct {
	mu     sync.Mutex
	period time.Duration
	timer  *time.Timer
	owners []*instance
	turn   int
}

// set records instance i's wish: a period of ms, or none.
func (t *ticker) set(i *instance, ms uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := -1
	for n, o := range t.owners {
		if o == i {
			k = n
		}
	}
	if ms == 0 {
		if k >= 0 {
			t.owners = append(t.owners[:k], t.owners[k+1:]...)
		}
		if len(t.owners) == 0 && t.timer != nil {
			t.timer.Stop()
			t.period = 0
		}
		return
	}
	if k < 0 {
		t.owners = append(t.owners, i)
	}
	d := time.Duration(ms) * time.Millisecond
	// The same period again (each instance sets it as it configures) leaves the timer
	// running, so that instances starting keep no tick from coming.
	if d == t.period && t.timer != nil {
		return
	}
	t.period = d
	if t.timer == nil {
		t.timer = time.AfterFunc(d, t.fire)
	} else {
		t.timer.Reset(d)
	}
}

// drop forgets an instance that is gone.
func (t *ticker) drop(i *instance) { t.set(i, 0) }

// fire runs on the timer's goroutine: the tick goes to one owner. Ticks do not pile up:
// an instance has one due at most.
func (t *ticker) fire() {
	t.mu.Lock()
	n := len(t.owners)
	if n == 0 || t.period == 0 {
		t.mu.Unlock()
		return
	}
	t.turn = (t.turn + 1) % n
	var buf [8]*instance
	owners := append(append(buf[:0], t.owners[t.turn:]...), t.owners[:t.turn]...)
	t.timer.Reset(t.period)
	t.mu.Unlock()
	toOne(owners, func(o *instance) bool { return o.postTick() })
}

// toOne has one of owners, in the order given, take what give hands it: an idle one,
// delivering it now on a goroutine of its own; else one busy delivering its root
// context's events, which looks for more before it goes back to the pool; else any, which
// gets it at its stream's next phase. give reports false for an owner gone since the
// caller listed it, and the next is tried.
func toOne(owners []*instance, give func(*instance) bool) {
	// An owner a stream holds would hear of it only at that stream's next phase, which
	// may be a long time coming: a backend's answer, a long upload.
	for _, o := range owners {
		if o.p.pool.TakeIdle(o) {
			give(o) // held here, so it only queues
			go o.p.background(o)
			return
		}
	}
	for _, o := range owners {
		if !o.streamHeld.Load() && give(o) {
			return
		}
	}
	for _, o := range owners {
		if give(o) {
			return
		}
	}
}
