//go:build !unix

package runtime

import "errors"

func mapMemory(uint64, uint64) ([]byte, error) { return nil, errors.New("runtime: no mmap here") }

func unmapMemory([]byte) {}
