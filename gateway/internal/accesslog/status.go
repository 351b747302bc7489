package accesslog

import (
	"fmt"
	"strconv"
	"strings"
)

// statusSet is the statuses a status filter lets through, one bit per code below
// maxStatus, so that Wants is a shift and a mask.
type statusSet struct {
	all  bool // no filter: every status, 0 and odd ones included
	bits [(maxStatus + 63) / 64]uint64
}

const maxStatus = 600

func parseStatus(entries []string) (statusSet, error) {
	var s statusSet
	if len(entries) == 0 {
		s.all = true
		return s, nil
	}
	for _, e := range entries {
		lo, hi, ok := parseStatusEntry(e)
		if !ok {
			return s, fmt.Errorf(`accesslog: status filter entry %q: want a class such as "5xx", a code such as "404", or a range such as "500-599", of codes from 100 to 599`, e)
		}
		for c := lo; c <= hi; c++ {
			s.bits[c/64] |= 1 << (c % 64)
		}
	}
	return s, nil
}

func parseStatusEntry(e string) (lo, hi int, ok bool) {
	if len(e) == 3 && e[0] >= '1' && e[0] <= '5' && strings.EqualFold(e[1:], "xx") {
		lo = int(e[0]-'0') * 100
		return lo, lo + 99, true
	}
	a, b, isRange := strings.Cut(e, "-")
	if !isRange {
		b = a
	}
	lo, ok1 := parseCode(a)
	hi, ok2 := parseCode(b)
	return lo, hi, ok1 && ok2 && lo <= hi
}

func parseCode(s string) (int, bool) {
	if len(s) != 3 {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 100 && n < maxStatus
}

func (s *statusSet) has(status int) bool {
	if s.all {
		return true
	}
	return status >= 0 && status < maxStatus && s.bits[status/64]&(1<<(status%64)) != 0
}
