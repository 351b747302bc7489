package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
)

// Report is a run's outcome.
type Report struct {
	Host, Version string
	Started       time.Time
	Results       []*Result
}

// Failed reports whether any scenario failed.
func (r *Report) Failed() bool {
	for _, res := range r.Results {
		if res.Skipped == "" && !res.Passed() {
			return true
		}
	}
	return false
}

// WriteText writes the scenarios' outcomes, what failed, and a table of ABI functions:
// pass when every scenario that exercises one passed.
func (r *Report) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPROFILE\tRESULT\tTIME")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Scenario.Name, res.Scenario.Profile, outcome(res), res.Duration.Round(time.Millisecond))
	}
	tw.Flush()
	for _, res := range r.Results {
		for _, f := range res.Failures {
			fmt.Fprintf(w, "FAIL %s: %s\n", res.Scenario.Name, f)
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ABI FUNCTION\tRESULT\tSCENARIOS")
	var notes []string
	for _, row := range r.ABITable() {
		result := row.Result
		if result == "fail" {
			result = "FAIL"
		}
		if row.Note != "" {
			notes = append(notes, row.Function+": "+row.Note)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\n", row.Function, result, row.Scenarios)
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, "n/a "+n)
	}
	passed, failed := r.counts()
	fmt.Fprintf(w, "\n%d passed, %d failed\n", passed, failed)
}

func outcome(res *Result) string {
	switch {
	case res.Skipped != "":
		return "skip"
	case res.Passed():
		return "pass"
	}
	return "FAIL"
}

func (r *Report) counts() (passed, failed int) {
	for _, res := range r.Results {
		switch outcome(res) {
		case "pass":
			passed++
		case "FAIL":
			failed++
		}
	}
	return passed, failed
}

// ABIRow is one function's line of the ABI table.
type ABIRow struct {
	Function string `yaml:"function"`
	// Result: pass when every scenario that ran and exercises it passed; fail; skip when
	// its scenarios were all skipped; "not covered" when no scenario of the run exercises
	// it; n/a when none can (Note says why).
	Result    string `yaml:"result"`
	Scenarios int    `yaml:"scenarios"` // that ran and exercise it
	Note      string `yaml:"note,omitempty"`
}

// ABITable is a row per ABI function: every one of Proxy-Wasm 0.2.1, in the spec's order.
func (r *Report) ABITable() []ABIRow {
	rows := make([]ABIRow, 0, len(ABI))
	for _, fn := range ABI {
		row := ABIRow{Function: fn.Name, Result: "pass"}
		named, failed := false, false
		for _, res := range r.Results {
			if !slices.Contains(res.Scenario.ABI, fn.Name) {
				continue
			}
			named = true
			if res.Skipped == "" {
				row.Scenarios++
				failed = failed || !res.Passed()
			}
		}
		switch {
		case failed:
			row.Result = "fail"
		case row.Scenarios > 0:
		case named:
			row.Result = "skip"
		case fn.Untestable != "":
			row.Result, row.Note = "n/a", fn.Untestable
		default:
			row.Result = "not covered"
		}
		rows = append(rows, row)
	}
	return rows
}

// JUnit XML, as CI systems read it: one test suite per profile, one test case per
// scenario.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Name    string       `xml:"name,attr"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     float64     `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// WriteJUnit writes the report as JUnit XML.
func (r *Report) WriteJUnit(w io.Writer) error {
	out := junitSuites{Name: "proxy-wasm conformance: " + r.Host}
	for _, p := range Profiles {
		s := junitSuite{Name: p}
		for _, res := range r.Results {
			if res.Scenario.Profile != p {
				continue
			}
			c := junitCase{Name: res.Scenario.Name, ClassName: "conformance." + p, Time: res.Duration.Seconds()}
			switch outcome(res) {
			case "FAIL":
				c.Failure = &junitFailure{Message: res.Failures[0], Text: strings.Join(res.Failures, "\n")}
				s.Failures++
			case "skip":
				c.Skipped = &junitSkipped{Message: res.Skipped}
				s.Skipped++
			}
			s.Tests++
			s.Time += c.Time
			s.Cases = append(s.Cases, c)
		}
		if s.Tests > 0 {
			out.Suites = append(out.Suites, s)
		}
	}
	io.WriteString(w, xml.Header)
	e := xml.NewEncoder(w)
	e.Indent("", "  ")
	if err := e.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteYAML writes the machine-readable report: which host, which version, which
// profiles, and pass, fail or skip per scenario, as the Gateway API's conformance reports
// are.
func (r *Report) WriteYAML(w io.Writer) error {
	type test struct {
		Name     string   `yaml:"name"`
		Result   string   `yaml:"result"`
		ABI      []string `yaml:"abi,omitempty"`
		Failures []string `yaml:"failures,omitempty"`
		Skipped  string   `yaml:"skipped,omitempty"`
	}
	type profile struct {
		Name    string `yaml:"name"`
		Passed  int    `yaml:"passed"`
		Failed  int    `yaml:"failed"`
		Skipped int    `yaml:"skipped"`
		Tests   []test `yaml:"tests"`
	}
	doc := struct {
		Kind      string    `yaml:"kind"`
		ABI       string    `yaml:"abi"`
		Host      string    `yaml:"host"`
		Version   string    `yaml:"version"`
		Date      string    `yaml:"date"`
		Profiles  []profile `yaml:"profiles"`
		Functions []ABIRow  `yaml:"abi_functions"`
	}{Kind: "ProxyWasmConformanceReport", ABI: "0.2.1", Host: r.Host, Version: r.Version, Date: r.Started.UTC().Format(time.RFC3339)}
	for _, p := range Profiles {
		pr := profile{Name: p}
		for _, res := range r.Results {
			if res.Scenario.Profile != p {
				continue
			}
			o := outcome(res)
			switch o {
			case "pass":
				pr.Passed++
			case "FAIL":
				pr.Failed++
				o = "fail"
			default:
				pr.Skipped++
			}
			pr.Tests = append(pr.Tests, test{Name: res.Scenario.Name, Result: o, ABI: res.Scenario.ABI, Failures: res.Failures, Skipped: res.Skipped})
		}
		if len(pr.Tests) > 0 {
			doc.Profiles = append(doc.Profiles, pr)
		}
	}
	doc.Functions = r.ABITable()
	e := yaml.NewEncoder(w)
	e.SetIndent(2)
	if err := e.Encode(doc); err != nil {
		return err
	}
	return e.Close()
}
