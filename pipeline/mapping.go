package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Direction says which way a mapping flows.
type Direction string

const (
	DirectionForward Direction = "forward" // monolith -> service store
	DirectionBoth    Direction = "both"    // and service store -> monolith (reverse flow)
)

// Conflict is the policy for rows written on both sides.
type Conflict string

const (
	LastWriterWins Conflict = "last-writer-wins"
	MonolithWins   Conflict = "monolith-wins"
	ServiceWins    Conflict = "service-wins"
)

// Columns shapes the rows of a mapping: which columns go, and their names in
// the target.
type Columns struct {
	Include []string          `yaml:"include,omitempty" json:"include,omitempty"`
	Exclude []string          `yaml:"exclude,omitempty" json:"exclude,omitempty"`
	Rename  map[string]string `yaml:"rename,omitempty" json:"rename,omitempty"`
	// Types converts columns: source column -> target type (one of
	// ConvertibleTypes); the same in every store.
	Types map[string]string `yaml:"types,omitempty" json:"types,omitempty"`
}

// ConvertibleTypes are the target types a column can be converted to, with
// the base type the sinks then write (PostgreSQL type -> base type name).
var ConvertibleTypes = map[string]string{
	"text": "text", "bigint": "int8", "integer": "int4", "numeric": "numeric",
	"double precision": "float8", "boolean": "bool", "timestamptz": "timestamptz",
	"date": "date", "jsonb": "jsonb", "uuid": "uuid",
}

// Mapping sends one monolith table to one table of a service store.
type Mapping struct {
	Name      string    `yaml:"name" json:"name"`
	Source    string    `yaml:"source" json:"source"`                       // schema.table in the monolith
	Service   string    `yaml:"service,omitempty" json:"service,omitempty"` // label; defaults to store
	Store     string    `yaml:"store" json:"store"`                         // URL from SCOOP_STORE_<STORE>_URL
	Target    string    `yaml:"target,omitempty" json:"target,omitempty"`   // table in the store; defaults to the source table name
	Topic     string    `yaml:"topic,omitempty" json:"topic,omitempty"`     // defaults to <prefix>.<schema>.<table>
	Columns   Columns   `yaml:"columns,omitempty" json:"columns,omitempty"`
	Direction Direction `yaml:"direction,omitempty" json:"direction,omitempty"`
	Conflict  Conflict  `yaml:"conflict,omitempty" json:"conflict,omitempty"`
}

// File is the mapping file.
type File struct {
	Mappings []Mapping `yaml:"mappings"`
}

// Digest identifies the file's mappings (after defaults), so that the
// registry can tell which file it was last applied from; comments and
// layout do not count.
func (f *File) Digest() string {
	b, _ := json.Marshal(f.Mappings)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// MappingError names the mapping and field at fault and the fix.
type MappingError struct {
	Mapping string // mapping name, or "#N" when it has none
	Field   string
	Problem string
	Fix     string
}

func (e *MappingError) Error() string {
	return fmt.Sprintf("mapping %s: field %s: %s (fix: %s)", e.Mapping, e.Field, e.Problem, e.Fix)
}

// ErrInvalidMappings wraps every validation failure.
var ErrInvalidMappings = errors.New("invalid mappings")

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// cqlTableRe is what Cassandra accepts as a table name, quoted or not.
var cqlTableRe = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// cqlTableName suggests a Cassandra table name for name.
func cqlTableName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else if b.Len() > 0 && !strings.HasSuffix(b.String(), "_") {
			b.WriteByte('_')
		}
	}
	if out := strings.Trim(b.String(), "_"); out != "" {
		return out
	}
	return "t"
}

// SourceTable splits Source into schema and table (schema defaults to public).
func (m *Mapping) SourceTable() (schemaName, table string) {
	if i := strings.IndexByte(m.Source, '.'); i >= 0 {
		return m.Source[:i], m.Source[i+1:]
	}
	return "public", m.Source
}

// TargetTable is the table written in the store.
func (m *Mapping) TargetTable() string {
	if m.Target != "" {
		return m.Target
	}
	_, t := m.SourceTable()
	return t
}

// TopicName is the Kafka topic of the mapping's source table.
func (m *Mapping) TopicName(prefix string) string {
	if m.Topic != "" {
		return m.Topic
	}
	schemaName, table := m.SourceTable()
	return TopicFor(prefix, schemaName, table)
}

// TopicFor is the default topic name of a table, <prefix>.<schema>.<table>,
// made a name Kafka accepts the way Debezium's topic naming does: every
// character other than an ASCII letter, digit, '.', '_' or '-' becomes '_'
// (one per character), and the name is cut at 249 characters. Two tables
// whose names then meet are refused by CheckTopics.
func TopicFor(prefix, schemaName, table string) string {
	var b strings.Builder
	for _, r := range prefix + "." + schemaName + "." + table {
		if b.Len() == maxTopicLen {
			break
		}
		if topicRune(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// maxTopicLen is the longest topic name Kafka accepts.
const maxTopicLen = 249

func topicRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// topicProblem says why Kafka would refuse a topic name ("" if it would not).
func topicProblem(name string) string {
	switch {
	case len(name) > maxTopicLen:
		return fmt.Sprintf("%q is %d characters long; Kafka allows %d at most", name, len(name), maxTopicLen)
	case name == "." || name == "..":
		return fmt.Sprintf("Kafka refuses %q as a topic name", name)
	}
	for _, r := range name {
		if !topicRune(r) {
			return fmt.Sprintf("%q has a character Kafka refuses in topic names (%q)", name, r)
		}
	}
	return ""
}

// CheckTopics refuses mappings that Kafka's topics cannot keep apart: two
// tables whose topics meet (the same name, or names Kafka holds to collide
// because they differ only in '.' and '_'), and one table given two topics
// (the source publishes a table to one topic). Errors name both mappings.
func CheckTopics(prefix string, mappings []Mapping) error {
	type use struct {
		mapping, table, topic string
	}
	byTopic := map[string]use{} // by the topic with '.' read as '_'
	byTable := map[string]use{}
	var errs []error
	for i := range mappings {
		m := &mappings[i]
		s, t := m.SourceTable()
		u := use{m.Name, s + "." + t, m.TopicName(prefix)}
		if prev, ok := byTable[u.table]; ok && prev.topic != u.topic {
			errs = append(errs, &MappingError{Mapping: m.Name, Field: "topic", Problem: fmt.Sprintf("mappings %s and %s read the same table %s but name different topics %q and %q", prev.mapping, m.Name, u.table, prev.topic, u.topic), Fix: "give both mappings the same topic, or leave it out of both"})
			continue
		}
		byTable[u.table] = u
		collides := strings.ReplaceAll(u.topic, ".", "_")
		if prev, ok := byTopic[collides]; ok && prev.table != u.table {
			problem := fmt.Sprintf("mapping %s (table %s) and mapping %s (table %s) would both publish to topic %q", prev.mapping, prev.table, m.Name, u.table, u.topic)
			if prev.topic != u.topic {
				problem = fmt.Sprintf("topic %q of mapping %s (table %s) collides in Kafka with topic %q of mapping %s (table %s): they differ only in '.' and '_'", u.topic, m.Name, u.table, prev.topic, prev.mapping, prev.table)
			}
			errs = append(errs, &MappingError{Mapping: m.Name, Field: "topic", Problem: problem, Fix: "set topic: to a distinct name in one of the mappings (characters other than letters, digits, '.', '_' and '-' become '_' in the default topic name)"})
			continue
		}
		byTopic[collides] = u
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n%w", ErrInvalidMappings, errors.Join(errs...))
	}
	return nil
}

// TargetColumn says whether a source column goes to the target and under
// which name.
func (m *Mapping) TargetColumn(source string) (string, bool) {
	if len(m.Columns.Include) > 0 && !contains(m.Columns.Include, source) {
		return "", false
	}
	if contains(m.Columns.Exclude, source) {
		return "", false
	}
	if to, ok := m.Columns.Rename[source]; ok {
		return to, true
	}
	return source, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ParseFile reads a mapping file, refusing unknown fields, and validates it.
// stores holds the names of the stores that have a URL.
func ParseFile(r io.Reader, stores map[string]string) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read mappings: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %v (fix: check the field names and layout against docs/mappings.md)", ErrInvalidMappings, err)
	}
	if err := f.Validate(stores); err != nil {
		return nil, err
	}
	return &f, nil
}

// LoadFile reads and validates the mapping file at path.
func LoadFile(path string, stores map[string]string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open mappings file: %w", err)
	}
	defer fh.Close()
	f, err := ParseFile(fh, stores)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Validate checks what can be checked without a database and fills defaults.
// All problems are reported together.
func (f *File) Validate(stores map[string]string) error {
	var errs []error
	seen := map[string]bool{}
	reverseTargets := map[string]string{} // store/target table -> mapping with direction both
	for i := range f.Mappings {
		m := &f.Mappings[i]
		id := m.Name
		if id == "" {
			id = fmt.Sprintf("#%d", i+1)
		}
		bad := func(field, problem, fix string) {
			errs = append(errs, &MappingError{Mapping: id, Field: field, Problem: problem, Fix: fix})
		}
		switch {
		case m.Name == "":
			bad("name", "missing", "give every mapping a unique name such as users")
		case !nameRe.MatchString(m.Name):
			bad("name", fmt.Sprintf("%q is not a valid name", m.Name), "use lower-case letters, digits, _ and -, starting with a letter")
		case seen[m.Name]:
			bad("name", fmt.Sprintf("duplicate name %q", m.Name), "rename one of the mappings")
		}
		seen[m.Name] = true
		if m.Source == "" {
			bad("source", "missing", "name the monolith table as schema.table, e.g. public.users")
		} else if s, t := m.SourceTable(); s == "" || t == "" || strings.Count(m.Source, ".") > 1 {
			bad("source", fmt.Sprintf("%q is not schema.table", m.Source), "write the table as schema.table, e.g. public.users")
		}
		if m.Topic != "" {
			if problem := topicProblem(m.Topic); problem != "" {
				bad("topic", problem, fmt.Sprintf("use at most %d ASCII letters, digits, '.', '_' and '-', or leave topic out for <prefix>.<schema>.<table>", maxTopicLen))
			}
		}
		if m.Store == "" {
			bad("store", "missing", "name the service store; its URL comes from SCOOP_STORE_<STORE>_URL")
		} else if _, ok := stores[strings.ToLower(m.Store)]; !ok {
			bad("store", fmt.Sprintf("store %q has no URL", m.Store), fmt.Sprintf("set %s to postgres://... or cassandra://host:port/keyspace", StoreEnvVar(m.Store)))
		}
		if u, err := url.Parse(stores[strings.ToLower(m.Store)]); err == nil && u.Scheme == "cassandra" && !cqlTableRe.MatchString(m.TargetTable()) {
			// The default target is the source table's name, which
			// PostgreSQL allows to hold anything.
			bad("target", fmt.Sprintf("%q is not a Cassandra table name (letters, digits and _ only)", m.TargetTable()), "set target: to a name such as "+cqlTableName(m.TargetTable()))
		}
		if m.Service == "" {
			m.Service = m.Store
		}
		switch m.Direction {
		case "":
			m.Direction = DirectionForward
		case DirectionForward:
		case DirectionBoth:
			key := strings.ToLower(m.Store) + "/" + m.TargetTable()
			if prev, ok := reverseTargets[key]; ok {
				bad("direction", fmt.Sprintf("mapping %q already writes table %q of store %q with direction both; its writes cannot go back to two monolith tables", prev, m.TargetTable(), m.Store), "keep direction: both on one of them")
			}
			reverseTargets[key] = m.Name
			if u, err := url.Parse(stores[strings.ToLower(m.Store)]); err == nil && u.Scheme == "cassandra" && m.Conflict != "" && m.Conflict != LastWriterWins {
				bad("conflict", fmt.Sprintf("%s needs to know what each write was made on top of, which a Cassandra store cannot tell", m.Conflict), "use conflict: last-writer-wins with a Cassandra store (see docs/reverse.md)")
			}
		default:
			bad("direction", fmt.Sprintf("unknown direction %q", m.Direction), "use forward or both")
		}
		switch m.Conflict {
		case "":
			m.Conflict = LastWriterWins
		case LastWriterWins:
		case MonolithWins, ServiceWins:
			if m.Direction == DirectionForward {
				bad("conflict", fmt.Sprintf("%s applies only with direction: both (a forward mapping has one writer, the monolith)", m.Conflict), "set direction: both, or remove conflict")
			}
		default:
			bad("conflict", fmt.Sprintf("unknown policy %q", m.Conflict), "use last-writer-wins, monolith-wins or service-wins")
		}
		if len(m.Columns.Include) > 0 && len(m.Columns.Exclude) > 0 {
			bad("columns", "both include and exclude are set", "keep one of them")
		}
		for _, col := range m.Columns.Exclude {
			if _, ok := m.Columns.Rename[col]; ok {
				bad("columns.rename", fmt.Sprintf("column %q is both excluded and renamed", col), "remove it from exclude or from rename")
			}
		}
		for _, col := range sortedKeys(m.Columns.Types) {
			if _, ok := ConvertibleTypes[m.Columns.Types[col]]; !ok {
				bad("columns.types", fmt.Sprintf("column %q: type %q cannot be converted to", col, m.Columns.Types[col]), "use one of "+convertibleList())
			}
			if contains(m.Columns.Exclude, col) {
				bad("columns.types", fmt.Sprintf("column %q is both excluded and converted", col), "remove it from exclude or from types")
			}
		}
		targets := map[string]string{}
		for _, from := range sortedKeys(m.Columns.Rename) {
			to := m.Columns.Rename[from]
			if to == "" {
				bad("columns.rename", fmt.Sprintf("column %q is renamed to an empty name", from), "give the target column a name")
			}
			if prev, ok := targets[to]; ok {
				bad("columns.rename", fmt.Sprintf("columns %q and %q are both renamed to %q", prev, from, to), "give each target column its own name")
			}
			targets[to] = from
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n%w", ErrInvalidMappings, errors.Join(errs...))
	}
	return nil
}

func convertibleList() string {
	names := make([]string, 0, len(ConvertibleTypes))
	for n := range ConvertibleTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// StoreEnvVar is the variable holding a store's URL.
func StoreEnvVar(store string) string {
	return "SCOOP_STORE_" + strings.ToUpper(strings.ReplaceAll(store, "-", "_")) + "_URL"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// SourceTables lists the distinct monolith tables of the mappings.
func (f *File) SourceTables() [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for i := range f.Mappings {
		s, t := f.Mappings[i].SourceTable()
		k := [2]string{s, t}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}
