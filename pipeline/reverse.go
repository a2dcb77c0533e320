package pipeline

// The reverse flow carries a service store's writes back into the monolith
// (a mapping with direction: both). Its contract with the stores and with
// services that publish their own writes (Cassandra) is here.

// ReverseTopic is the topic of a mapping's reverse flow:
// <prefix>.reverse.<mapping>. Its events have the same envelope as the
// forward topics; their commit time is the time of the write in the service
// store (for Cassandra, the write's USING TIMESTAMP).
func ReverseTopic(prefix string, m *Mapping) string {
	return prefix + ".reverse." + m.Name
}

// OriginHeader, on an event, names the scoop flow whose apply wrote the
// change into the store it was captured from (absent for a change an
// application made). A sink skips the changes that its own mapping's
// opposite flow wrote: they came from the store it writes to.
const OriginHeader = "scoop.origin"

// ForwardOrigin and ReverseOrigin name a mapping's two flows in
// OriginHeader: the forward flow writes the service store, the reverse flow
// the monolith.
func ForwardOrigin(m *Mapping) string { return "forward:" + m.Name }

// ReverseOrigin: see ForwardOrigin.
func ReverseOrigin(m *Mapping) string { return "reverse:" + m.Name }
