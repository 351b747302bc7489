//go:build unix && !linux

package runtime

func adviseHuge([]byte) {}
