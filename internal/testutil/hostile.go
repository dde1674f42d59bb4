package testutil

import "strings"

// Request ids and model names come from files, so the pages that show them
// (the /requests page, the HTML report) are tested with these.
const (
	// HostileID is a request id that runs a script if not escaped.
	HostileID = `<img src=x onerror="document.title='pwned'">`
	// HostileModel is a model name that breaks out of a table cell and
	// runs a script if not escaped.
	HostileModel = `</td></tr></table><b>bold</b><script>document.title='pwned'</script>`
)

// LongModel is a model name of 200 characters, for layouts that must hold
// a long name.
var LongModel = "org/" + strings.Repeat("very-long-model-name-", 10)[:196]
