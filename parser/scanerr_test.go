package parser

import (
	"errors"
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// scanErrorCase is one malformed input and the error Scan must give: its
// reason, the line it names (0: none) and a part of its text.
type scanErrorCase struct {
	in   string
	err  error
	line int
	msg  string
}

// scanErrorCases is the table of the scanner's errors: at least one row
// for every error path of scan.go, lex.go and build.go.
func scanErrorCases() []scanErrorCase {
	const (
		ok     = "vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 1\nvllm:e2e_request_latency_seconds_count 1\nvllm:e2e_request_latency_seconds_sum 2\n"
		sum    = "vllm:e2e_request_latency_seconds_sum"
		bucket = "vllm:e2e_request_latency_seconds_bucket"
	)
	return []scanErrorCase{
		{"", ErrEmpty, 0, ""},
		{" \n\r\n\t", ErrEmpty, 0, ""},
		{"curl: (28) Operation timed out after 5001 milliseconds with 0 bytes received\n", ErrNoFamilies, 0, ""},
		{"curl: (28) Operation timed out", ErrIncomplete, 0, "newline"},
		{"<html><head><title>502 Bad Gateway</title></head></html>\n", ErrNoFamilies, 0, ""},
		{"# HELP x y\n# TYPE x counter\nx_total 1\n# EOF\n", ErrNoFamilies, 0, ""},
		{"process_start_time_seconds{pid=\"3\"} 1\n", ErrNoFamilies, 0, ""},
		{ok[:len(ok)-1], ErrIncomplete, 0, "newline"},
		{ok[:30], ErrIncomplete, 0, "newline"},
		{"x 1\n" + ok + "vllm:e2e_request_latency_seconds_sum{model_name=\"m\"} x\n", ErrSyntax, 5, "float"},
		{ok + "vllm:e2e_request_latency_seconds_sum{model_name=\"m\" 1\n", ErrSyntax, 4, "label value"},
		{ok + "vllm:e2e_request_latency_seconds_sum{model_name=m} 1\n", ErrSyntax, 4, "start of label value"},
		{ok + "vllm:e2e_request_latency_seconds_sum{model_name=\"m} 1\n", ErrSyntax, 4, "unterminated"},
		{ok + "vllm:e2e_request_latency_seconds_sum{1a=\"m\"} 1\n", ErrSyntax, 4, "label name"},
		{ok + "vllm:e2e_request_latency_seconds_sum\n", ErrSyntax, 4, "float"},
		{ok + "vllm:e2e_request_latency_seconds_sum 1 2.5\n", ErrSyntax, 4, "timestamp"},
		{ok + "vllm:e2e_request_latency_seconds_sum 2\n", ErrSyntax, 4, "duplicate _sum"},
		{ok + "vllm:e2e_request_latency_seconds_bucket{le=\"+Inf\"} 1\n", ErrSyntax, 4, "duplicate bucket"},
		{"vllm:e2e_request_latency_seconds_bucket{le=\"Inf\"} 1\n" + ok, ErrSyntax, 2, "duplicate bucket"},
		{ok + "vllm:e2e_request_latency_seconds_bucket 1\n", ErrSyntax, 4, "without le"},
		{ok + "vllm:e2e_request_latency_seconds_count{le=\"1\"} 1\n", ErrSyntax, 4, "le label on"},
		{strings.Replace(ok, "_sum", "_summ", 1), ErrIncomplete, 0, "no _sum"},
		{strings.Replace(ok, "_count 1", "_count 2", 1), ErrIncomplete, 0, "differs from _count"},
		{strings.Replace(ok, "le=\"+Inf\"", "le=\"9\"", 1), ErrIncomplete, 0, "no +Inf"},
		{"vllm:e2e_request_latency_seconds_bucket{le=\"1\"} 2\n" + ok, ErrIncomplete, 0, "below the previous"},
		{strings.Replace(ok, "_count 1", "_count NaN", 1), ErrIncomplete, 0, "invalid _count"},
		{"\x00\x01\xff\xfe\n", ErrNoFamilies, 0, ""},
		// An out-of-order repeat is found after the scan, yet reported
		// before a later error, in line order.
		{"vllm:e2e_request_latency_seconds_bucket{le=\"2\"} 1\nvllm:e2e_request_latency_seconds_bucket{le=\"1\"} 1\n" +
			"vllm:e2e_request_latency_seconds_bucket{le=\"1.0\"} 1\nvllm:e2e_request_latency_seconds_bucket{le=\"1\"} 1\n" +
			"vllm:e2e_request_latency_seconds_sum{ 1\n", ErrSyntax, 3, "first on line 2"},
		// One row for each error path of the lexer and the builder that the
		// rows above do not reach (TestScanErrorsCoverEveryMessage checks
		// that every message is given by some row; where paths share a
		// message, each has its row here).
		{ok + sum + " 1 2 x\n", ErrSyntax, 4, "spurious text after the timestamp"},
		{ok + "process_start_time_seconds 1\nprocess_start_time_seconds 2\n", ErrSyntax, 5, "duplicate sample process_start_time_seconds"},
		{ok + "vllm:e2e_request_latency_seconds_count 1\n", ErrSyntax, 4, "duplicate _count sample"},
		{ok + sum + "{a=\"1\",a=\"2\"} 1\n", ErrSyntax, 4, "duplicate label name \"a\""},
		{ok + bucket + "{model_name=\"m\"} 1\n", ErrSyntax, 4, "_bucket sample without le label"},
		{ok + bucket + "{le=\"x\"} 1\n", ErrSyntax, 4, "le label \"x\" is not a number"},
		{ok + bucket + "{le=\"NaN\"} 1\n", ErrSyntax, 4, "le label \"NaN\" is not a number"},
		// The same with the label block matched against the previous line's.
		{bucket + "{model_name=\"m\",le=\"1\"} 1\n" + bucket + "{model_name=\"m\",le=\"one\"} 1\n", ErrSyntax, 2, "le label \"one\" is not a number"},
		{ok + sum + "{ \n", ErrSyntax, 4, "unterminated label set"},
		{ok + sum + "{a=\"1\" \n", ErrSyntax, 4, "unterminated label set"},
		{ok + sum + "{a=\"1\" b=\"2\"} 1\n", ErrSyntax, 4, "unexpected end of label value \"1\""},
		{ok + sum + "{\"a\\x\"=\"1\"} 1\n", ErrSyntax, 4, "invalid escape sequence '\\x' in label name"},
		{ok + sum + "{\"abc\n", ErrSyntax, 4, "unterminated label name"},
		{ok + sum + "{abc\n", ErrSyntax, 4, "unterminated label name"},
		{ok + sum + "{\"\"=\"1\"} 1\n", ErrSyntax, 4, "invalid label name"},
		{ok + sum + "{\"\xff\"=\"1\"} 1\n", ErrSyntax, 4, "invalid label name \"\\xff\""},
		{ok + sum + "{a \"1\"} 1\n", ErrSyntax, 4, "expected '=' after label name \"a\""},
		{ok + sum + "{__name__=\"x\"} 1\n", ErrSyntax, 4, "label name \"__name__\" is reserved"},
		{ok + sum + "{a=\"1\\\n", ErrSyntax, 4, "unterminated label value"},
		{ok + sum + "{a=\"\\x\"} 1\n", ErrSyntax, 4, "invalid escape sequence '\\x' in label value"},
		{ok + sum + "{a=\"\xff\"} 1\n", ErrSyntax, 4, "invalid label value \"\\xff\""},
		{strings.Replace(ok, "_count", "_countx", 1), ErrIncomplete, 0, "no _count sample"},
		{strings.Replace(ok, "+Inf\"} 1", "+Inf\"} -1", 1), ErrIncomplete, 0, "invalid count -1 in bucket le=+Inf"},
	}
}

func TestScanErrors(t *testing.T) {
	for _, tc := range scanErrorCases() {
		snap, err := Scan([]byte(tc.in))
		var se *ScanError
		if !errors.Is(err, tc.err) || !errors.As(err, &se) || se.Line != tc.line || !strings.Contains(err.Error(), tc.msg) || snap != nil {
			t.Errorf("Scan(%q) = %v, %v; want %v on line %d containing %q", tc.in, snap, err, tc.err, tc.line, tc.msg)
		}
		for _, other := range []error{ErrEmpty, ErrSyntax, ErrIncomplete, ErrNoFamilies} {
			if other != tc.err && errors.Is(err, other) {
				t.Errorf("Scan(%q) = %v is also %v", tc.in, err, other)
			}
		}
		if tc.line > 0 && !strings.Contains(err.Error(), fmt.Sprintf("line %d:", tc.line)) {
			t.Errorf("error %q does not name line %d", err, tc.line)
		}
	}
}

// TestScanErrorsCoverEveryMessage: every error message written in the
// scanner's source (the format strings of syntaxErr and ScanError, the
// reasons of checkSeries) is given by some row of scanErrorCases, and
// every reason is. A new error path without its row fails here.
func TestScanErrorsCoverEveryMessage(t *testing.T) {
	var got []string
	reasons := map[error]bool{}
	for _, tc := range scanErrorCases() {
		if _, err := Scan([]byte(tc.in)); err != nil {
			got = append(got, err.Error())
		}
		reasons[tc.err] = true
	}
	for _, r := range []error{ErrEmpty, ErrSyntax, ErrIncomplete, ErrNoFamilies} {
		if !reasons[r] {
			t.Errorf("no row gives %v", r)
		}
	}
	verb := regexp.MustCompile(`%[a-z]`)
	fset := token.NewFileSet()
	n := 0
	for _, file := range []string{"scan.go", "lex.go", "build.go"} {
		f, err := goparser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(node ast.Node) bool {
			var lit *ast.BasicLit
			switch x := node.(type) {
			case *ast.CallExpr: // syntaxErr(msg, ...), fmt.Sprintf(msg, ...)
				if sel, ok := x.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "syntaxErr" || sel.Sel.Name == "Sprintf") && len(x.Args) > 0 {
					lit, _ = x.Args[0].(*ast.BasicLit)
				}
			case *ast.KeyValueExpr: // ScanError{Msg: msg}
				if k, ok := x.Key.(*ast.Ident); ok && k.Name == "Msg" {
					lit, _ = x.Value.(*ast.BasicLit)
				}
			case *ast.FuncDecl: // checkSeries' reasons
				if x.Name.Name == "checkSeries" {
					ast.Inspect(x.Body, func(m ast.Node) bool {
						if r, ok := m.(*ast.ReturnStmt); ok && len(r.Results) == 1 {
							if l, ok := r.Results[0].(*ast.BasicLit); ok {
								checkMessage(t, fset, l, verb, got, &n)
							}
						}
						return true
					})
				}
			}
			if lit != nil && lit.Kind == token.STRING {
				checkMessage(t, fset, lit, verb, got, &n)
			}
			return true
		})
	}
	if n < 30 {
		t.Fatalf("found only %d messages in the source: the search is broken", n)
	}
}

// checkMessage reports a message of the source (a format string) that no
// error of the table gives: every literal part of it must be in one error.
func checkMessage(t *testing.T, fset *token.FileSet, lit *ast.BasicLit, verb *regexp.Regexp, got []string, n *int) {
	t.Helper()
	msg, err := strconv.Unquote(lit.Value)
	if err != nil || msg == "" {
		return
	}
	*n++
	parts := verb.Split(msg, -1)
	for _, e := range got {
		all := true
		for _, p := range parts {
			if !strings.Contains(e, p) {
				all = false
				break
			}
		}
		if all {
			return
		}
	}
	t.Errorf("%v: no row of scanErrorCases gives %q", fset.Position(lit.Pos()), msg)
}
