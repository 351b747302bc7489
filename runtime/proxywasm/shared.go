package proxywasm

import (
	"slices"
	"sync"
)

// Shared data: process-wide, namespaced by vm_id, with the compare-and-swap semantics of
// proxy-wasm-cpp-host: a cas of 0 sets unconditionally; any other must equal the key's
// current cas, or the set fails with CAS_MISMATCH; every set gives the key a new cas.
// Setting a key that does not exist succeeds whatever the cas.

var sharedData = sharedStore{ns: map[string]map[string]*sharedValue{}, used: map[string]int64{}}

type sharedStore struct {
	mu   sync.RWMutex
	ns   map[string]map[string]*sharedValue
	used map[string]int64 // bytes held per vm_id: keys, values, HostEntryBytes per key
	cas  uint32
}

type sharedValue struct {
	v   []byte // never changed in place: a set replaces it
	cas uint32
}

func (s *sharedStore) get(vmID string, key []byte) ([]byte, uint32, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, ok := s.ns[vmID][string(key)]
	if !ok {
		return nil, 0, false
	}
	return v.v, v.cas, true
}

// set sets key in vmID's data; a set that would make the data hold more than limit bytes
// (negative: no limit) fails with BAD_ARGUMENT.
func (s *sharedStore) set(vmID string, key, value []byte, cas uint32, limit int64) status {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ns[vmID]
	if m == nil {
		m = map[string]*sharedValue{}
		s.ns[vmID] = m
	}
	cur, ok := m[string(key)]
	if ok && cas != 0 && cas != cur.cas {
		return statusCasMismatch
	}
	delta := int64(len(key)+len(value)) + HostEntryBytes
	if ok {
		delta = int64(len(value)) - int64(len(cur.v))
	}
	if limit >= 0 && delta > 0 && s.used[vmID]+delta > limit {
		return statusBadArgument
	}
	s.used[vmID] += delta
	s.cas++
	if s.cas == 0 {
		s.cas = 1
	}
	nv := &sharedValue{v: slices.Clone(value), cas: s.cas}
	if nv.v == nil {
		nv.v = []byte{}
	}
	m[string(key)] = nv
	return statusOK
}

func hostSetSharedData(i *instance, s []uint64) status {
	key, ok1 := i.read(u32(s, 0), u32(s, 1))
	val, ok2 := i.read(u32(s, 2), u32(s, 3))
	if !ok1 || !ok2 {
		return statusInvalidMemoryAccess
	}
	if sd := i.p.cfg.SharedData; sd != nil {
		if err := sd.Set(Caller{i}, key, val, u32(s, 4)); err != nil {
			return errStatus(err)
		}
		return statusOK
	}
	return sharedData.set(i.p.cfg.VMID, key, val, u32(s, 4), i.p.cfg.SharedDataBytes)
}

func hostGetSharedData(i *instance, s []uint64) status {
	key, ok := i.read(u32(s, 0), u32(s, 1))
	if !ok {
		return statusInvalidMemoryAccess
	}
	casPtr := u32(s, 4)
	if !i.writable(casPtr, 4) {
		return statusInvalidMemoryAccess
	}
	var v []byte
	var cas uint32
	if sd := i.p.cfg.SharedData; sd != nil {
		var err error
		if v, cas, err = sd.Get(Caller{i}, key); err != nil {
			return errStatus(err)
		}
	} else {
		var found bool
		if v, cas, found = sharedData.get(i.p.cfg.VMID, key); !found {
			return statusNotFound
		}
	}
	if st := i.returnBytes(v, u32(s, 2), u32(s, 3)); st != statusOK {
		return st
	}
	i.putU32(casPtr, cas)
	return statusOK
}

// Shared queues, per Runtime, named by (vm_id, name). An item enqueued is announced with
// proxy_on_queue_ready to the root context of one instance that registered the queue,
// round-robin among them, an idle one first.

type queueStore struct {
	mu     sync.Mutex
	byName map[[2]string]uint32
	byID   map[uint32]*queue
	next   uint32
}

type queue struct {
	items  [][]byte
	owners []*instance
	turn   int

	// Bounds from the filter that first registered the queue (Config.QueueDepth,
	// Config.SharedDataBytes; negative: none), and the bytes its items hold.
	depth    int
	maxBytes int64
	bytes    int64
}

func (q *queueStore) init() {
	q.byName = map[[2]string]uint32{}
	q.byID = map[uint32]*queue{}
}

func (q *queueStore) register(i *instance, name string) uint32 {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := [2]string{i.p.cfg.VMID, name}
	id, ok := q.byName[key]
	if !ok {
		q.next++
		id = q.next
		q.byName[key] = id
		q.byID[id] = &queue{depth: i.p.cfg.QueueDepth, maxBytes: i.p.cfg.SharedDataBytes}
	}
	qu := q.byID[id]
	if !slices.Contains(qu.owners, i) {
		qu.owners = append(qu.owners, i)
		i.evMu.Lock()
		i.queues = append(i.queues, id)
		i.evMu.Unlock()
	}
	return id
}

func (q *queueStore) unregister(i *instance, ids []uint32) {
	if len(ids) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		if qu := q.byID[id]; qu != nil {
			if k := slices.Index(qu.owners, i); k >= 0 {
				qu.owners = slices.Delete(qu.owners, k, k+1)
			}
		}
	}
}

func (q *queueStore) resolve(vmID, name string) (uint32, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	id, ok := q.byName[[2]string{vmID, name}]
	return id, ok
}

func (q *queueStore) enqueue(id uint32, v []byte) status {
	q.mu.Lock()
	qu := q.byID[id]
	if qu == nil {
		q.mu.Unlock()
		return statusNotFound
	}
	// A full queue refuses the item: its consumers are not keeping up.
	n := int64(len(v)) + HostEntryBytes
	if (qu.depth >= 0 && len(qu.items) >= qu.depth) || (qu.maxBytes >= 0 && qu.bytes+n > qu.maxBytes) {
		q.mu.Unlock()
		return statusBadArgument
	}
	qu.bytes += n
	qu.items = append(qu.items, slices.Clone(v))
	// The owners in turn, starting with the next one's.
	var buf [8]*instance
	owners := buf[:0]
	if n := len(qu.owners); n > 0 {
		qu.turn = (qu.turn + 1) % n
		owners = append(owners, qu.owners[qu.turn:]...)
		owners = append(owners, qu.owners[:qu.turn]...)
	}
	q.mu.Unlock()
	if len(owners) == 0 {
		return statusOK
	}
	ev := event{kind: evQueue, id: id}
	toOne(owners, func(o *instance) bool { return o.post(ev, true) })
	return statusOK
}

func (q *queueStore) dequeue(id uint32) ([]byte, status) {
	q.mu.Lock()
	defer q.mu.Unlock()
	qu := q.byID[id]
	if qu == nil {
		return nil, statusNotFound
	}
	if len(qu.items) == 0 {
		return nil, statusEmpty
	}
	v := qu.items[0]
	qu.bytes -= int64(len(v)) + HostEntryBytes
	qu.items[0] = nil
	qu.items = qu.items[1:]
	return v, statusOK
}

func hostRegisterSharedQueue(i *instance, s []uint64) status {
	name, ok := i.readString(u32(s, 0), u32(s, 1))
	if !ok || !i.writable(u32(s, 2), 4) {
		return statusInvalidMemoryAccess
	}
	i.putU32(u32(s, 2), i.p.r.queues.register(i, name))
	return statusOK
}

func hostResolveSharedQueue(i *instance, s []uint64) status {
	vmID, ok1 := i.readString(u32(s, 0), u32(s, 1))
	name, ok2 := i.readString(u32(s, 2), u32(s, 3))
	if !ok1 || !ok2 || !i.writable(u32(s, 4), 4) {
		return statusInvalidMemoryAccess
	}
	id, ok := i.p.r.queues.resolve(vmID, name)
	if !ok {
		return statusNotFound
	}
	i.putU32(u32(s, 4), id)
	return statusOK
}

func hostEnqueueSharedQueue(i *instance, s []uint64) status {
	v, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok {
		return statusInvalidMemoryAccess
	}
	return i.p.r.queues.enqueue(u32(s, 0), v)
}

func hostDequeueSharedQueue(i *instance, s []uint64) status {
	if !i.writable(u32(s, 1), 4) || !i.writable(u32(s, 2), 4) {
		return statusInvalidMemoryAccess
	}
	v, st := i.p.r.queues.dequeue(u32(s, 0))
	if st != statusOK {
		return st
	}
	return i.returnBytes(v, u32(s, 1), u32(s, 2))
}
