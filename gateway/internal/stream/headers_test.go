package stream

import (
	"net/http"
	"testing"
)

func TestHasTokenAndHopByHop(t *testing.T) {
	h := http.Header{
		"Connection":       {"keep-alive, X-Secret", "Upgrade"},
		"X-Secret":         {"s"},
		"Keep-Alive":       {"timeout=5"},
		"Te":               {"gzip, trailers"},
		"Upgrade":          {"websocket"},
		"Proxy-Connection": {"keep-alive"},
		"X-Kept":           {"k"},
	}
	if !hasToken(h["Connection"], "upgrade") || hasToken(h["Connection"], "close") {
		t.Fatal("hasToken")
	}
	RemoveHopByHop(h, true)
	for _, gone := range []string{"X-Secret", "Keep-Alive", "Proxy-Connection"} {
		if _, ok := h[gone]; ok {
			t.Errorf("%s survived", gone)
		}
	}
	if h.Get("Te") != "trailers" || h.Get("Upgrade") != "websocket" || h.Get("Connection") != "Upgrade" || h.Get("X-Kept") != "k" {
		t.Errorf("after: %v", h)
	}
}

func TestNewRequestID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newRequestID()
		if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[14] != '4' || id[18] != '-' || id[23] != '-' ||
			(id[19] != '8' && id[19] != '9' && id[19] != 'a' && id[19] != 'b') {
			t.Fatalf("not a version 4 UUID: %s", id)
		}
		if seen[id] {
			t.Fatalf("repeated: %s", id)
		}
		seen[id] = true
	}
}
