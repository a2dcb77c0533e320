package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Temporal values in Debezium's semantic types (time.precision.mode
// adaptive_time_microseconds, interval.handling.mode string):
//
//	date        io.debezium.time.Date            int32, days since 1970-01-01
//	timestamp   io.debezium.time.MicroTimestamp  int64, µs since 1970-01-01T00:00:00
//	time        io.debezium.time.MicroTime       int64, µs since midnight
//	timetz      io.debezium.time.ZonedTime       string, ISO 8601 with its offset ("10:15:30.5+02:00")
//	interval    io.debezium.time.Interval        string, "P1Y2M3DT4H5M6.5S" (every field)
//
// PostgreSQL's infinity and -infinity dates and timestamps have no number;
// scoop writes the largest and smallest number of the type for them and
// reads those back as infinity (TextJSON).

const (
	usPerSecond = int64(time.Second / time.Microsecond)
	usPerDay    = 86400 * usPerSecond
)

// appendDate writes a date ("2024-02-29", "0044-03-15 BC", "infinity") as
// days since the epoch.
func appendDate(dst []byte, text []byte) ([]byte, error) {
	switch string(text) {
	case "infinity":
		return strconv.AppendInt(dst, math.MaxInt32, 10), nil
	case "-infinity":
		return strconv.AppendInt(dst, math.MinInt32, 10), nil
	}
	days, err := parseDate(string(text))
	if err != nil {
		return dst, err
	}
	return strconv.AppendInt(dst, days, 10), nil
}

// parseDate returns the days since the epoch of an ISO date with an
// optional " BC" suffix (year 1 BC is year 0).
func parseDate(s string) (int64, error) {
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	i := strings.IndexByte(s, '-')
	if i <= 0 || len(s) != i+6 || s[i+3] != '-' {
		return 0, fmt.Errorf("date: unexpected text %q", s)
	}
	y, err1 := strconv.Atoi(s[:i])
	m, err2 := strconv.Atoi(s[i+1 : i+3])
	d, err3 := strconv.Atoi(s[i+4:])
	if err1 != nil || err2 != nil || err3 != nil || m < 1 || m > 12 || d < 1 || d > 31 {
		return 0, fmt.Errorf("date: unexpected text %q", s)
	}
	if bc {
		y = 1 - y
	}
	return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Unix() / 86400, nil
}

// parseClock returns the µs since midnight of "HH:MM:SS[.ffffff]" and the
// rest of the text (a zone offset, for timetz).
func parseClock(s string) (us int64, rest string, err error) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, "", fmt.Errorf("time: unexpected text %q", s)
	}
	h, err1 := strconv.Atoi(s[:2])
	m, err2 := strconv.Atoi(s[3:5])
	sec, err3 := strconv.Atoi(s[6:8])
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, "", fmt.Errorf("time: unexpected text %q", s)
	}
	us = (int64(h)*3600 + int64(m)*60 + int64(sec)) * usPerSecond
	rest = s[8:]
	if strings.HasPrefix(rest, ".") {
		j := 1
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		frac := rest[1:j]
		if len(frac) == 0 || len(frac) > 6 {
			return 0, "", fmt.Errorf("time: unexpected text %q", s)
		}
		f, _ := strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		us += f
		rest = rest[j:]
	}
	return us, rest, nil
}

// appendMicroTimestamp writes a timestamp without zone ("2024-02-29
// 12:34:56.789", BC and infinity too) as µs since the epoch.
func appendMicroTimestamp(dst []byte, text []byte) ([]byte, error) {
	s := string(text)
	switch s {
	case "infinity":
		return strconv.AppendInt(dst, math.MaxInt64, 10), nil
	case "-infinity":
		return strconv.AppendInt(dst, math.MinInt64, 10), nil
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return dst, fmt.Errorf("timestamp: unexpected text %q", text)
	}
	date := s[:sp]
	if bc {
		date += " BC"
	}
	days, err := parseDate(date)
	if err != nil {
		return dst, fmt.Errorf("timestamp: unexpected text %q", text)
	}
	us, rest, err := parseClock(s[sp+1:])
	if err != nil || rest != "" {
		return dst, fmt.Errorf("timestamp: unexpected text %q", text)
	}
	return strconv.AppendInt(dst, days*usPerDay+us, 10), nil
}

// appendMicroTime writes a time ("23:59:59.999999", "24:00:00") as µs since
// midnight.
func appendMicroTime(dst []byte, text []byte) ([]byte, error) {
	us, rest, err := parseClock(string(text))
	if err != nil || rest != "" {
		return dst, fmt.Errorf("time: unexpected text %q", text)
	}
	return strconv.AppendInt(dst, us, 10), nil
}

// appendZonedTime writes a timetz ("12:00:00+05:30", "01:02:03.45-03",
// "00:00:00+00") as an ISO 8601 time with offset ("12:00:00+05:30",
// "01:02:03.45-03:00", "00:00:00Z"). Debezium's ZonedTime turns the time
// into UTC; scoop keeps the offset (the same instant, and the value
// PostgreSQL stored), so its own sinks write the column back unchanged.
func appendZonedTime(dst []byte, text []byte) ([]byte, error) {
	_, zone, err := parseClock(string(text))
	if err != nil || len(zone) < 3 || (zone[0] != '+' && zone[0] != '-') {
		return dst, fmt.Errorf("timetz: unexpected text %q", text)
	}
	for _, part := range strings.Split(zone[1:], ":") {
		if len(part) != 2 || part[0] < '0' || part[0] > '9' || part[1] < '0' || part[1] > '9' {
			return dst, fmt.Errorf("timetz: unexpected text %q", text)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, text[:len(text)-len(zone)]...)
	switch {
	case zone == "+00":
		dst = append(dst, 'Z')
	case len(zone) == 3:
		dst = append(dst, zone...)
		dst = append(dst, ":00"...)
	default:
		dst = append(dst, zone...)
	}
	return append(dst, '"'), nil
}

// appendClock writes µs since midnight as HH:MM:SS[.f], the fraction without
// trailing zeros.
func appendClock(dst []byte, us int64) []byte {
	sec := us / usPerSecond
	dst = fmt.Appendf(dst, "%02d:%02d:%02d", sec/3600, sec/60%60, sec%60)
	if f := us % usPerSecond; f != 0 {
		frac := strings.TrimRight(fmt.Sprintf("%06d", f), "0")
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return dst
}

// appendInterval writes an interval in PostgreSQL's iso_8601 style
// ("P1Y2M3DT4H5M6.5S", "PT0S", "P-1Y-2M") in Debezium's string form, which
// names every field: "P1Y2M3DT4H5M6.5S", "P0Y0M0DT0H0M0S", "P-1Y-2M0DT0H0M0S".
func appendInterval(dst []byte, text []byte) ([]byte, error) {
	s := string(text)
	if len(s) < 3 || s[0] != 'P' {
		return dst, fmt.Errorf("interval: unexpected text %q", text)
	}
	var date, clock [3]string // Y M D, H M S
	inTime := false
	for i := 1; i < len(s); {
		if s[i] == 'T' {
			inTime = true
			i++
			continue
		}
		j := i
		for j < len(s) && (s[j] == '-' || s[j] == '+' || s[j] == '.' || (s[j] >= '0' && s[j] <= '9')) {
			j++
		}
		if j == i || j >= len(s) {
			return dst, fmt.Errorf("interval: unexpected text %q", text)
		}
		num := s[i:j]
		slot := strings.IndexByte("YMD", s[j])
		fields := &date
		if inTime {
			slot = strings.IndexByte("HMS", s[j])
			fields = &clock
		}
		if slot < 0 || fields[slot] != "" || (strings.Contains(num, ".") && !(inTime && slot == 2)) {
			return dst, fmt.Errorf("interval: unexpected text %q", text)
		}
		fields[slot] = num
		i = j + 1
	}
	dst = append(dst, "\"P"...)
	for i, unit := range "YMD" {
		dst = append(dst, orZero(date[i])...)
		dst = append(dst, byte(unit))
	}
	dst = append(dst, 'T')
	for i, unit := range "HMS" {
		n := orZero(clock[i])
		if i == 2 && strings.Contains(n, ".") {
			n = strings.TrimRight(strings.TrimRight(n, "0"), ".")
		}
		dst = append(dst, n...)
		dst = append(dst, byte(unit))
	}
	return append(dst, '"'), nil
}

func orZero(n string) string {
	if n == "" {
		return "0"
	}
	return n
}

// TextJSON returns an event value of a column of PostgreSQL base type typ
// (for arrays: the element type) in the form scoop's sinks read: Debezium's
// numeric temporal values (date, timestamp, time; see above) become
// PostgreSQL's ISO text again; anything else, including the text forms of
// events written before scoop used Debezium's types, is returned as it is.
// Arrays are converted element by element.
func TextJSON(typ string, raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return raw, nil
	}
	switch typ {
	case "date", "timestamp", "time":
	default:
		return raw, nil
	}
	switch c := raw[0]; {
	case c == '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s array: %w", typ, err)
		}
		out := []byte{'['}
		for i, it := range items {
			if i > 0 {
				out = append(out, ',')
			}
			v, err := TextJSON(typ, bytes.TrimSpace(it))
			if err != nil {
				return nil, err
			}
			out = append(out, v...)
		}
		return append(out, ']'), nil
	case c != '-' && (c < '0' || c > '9'):
		return raw, nil // a string (the text form), null
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: %s is not a whole number", typ, raw)
	}
	out := []byte{'"'}
	switch typ {
	case "date":
		switch {
		case n == math.MaxInt32:
			out = append(out, "infinity"...)
		case n == math.MinInt32:
			out = append(out, "-infinity"...)
		case n > math.MaxInt32 || n < math.MinInt32:
			return nil, fmt.Errorf("date: %d days is out of range", n)
		default:
			out = appendISODate(out, time.Unix(n*86400, 0).UTC(), -1)
		}
	case "timestamp":
		switch n {
		case math.MaxInt64:
			out = append(out, "infinity"...)
		case math.MinInt64:
			out = append(out, "-infinity"...)
		default:
			days, us := n/usPerDay, n%usPerDay
			if us < 0 {
				days, us = days-1, us+usPerDay
			}
			out = appendISODate(out, time.Unix(days*86400, 0).UTC(), us)
		}
	case "time":
		if n < 0 || n > usPerDay {
			return nil, fmt.Errorf("time: %d µs is not a time of day", n)
		}
		out = appendClock(out, n)
	}
	return append(out, '"'), nil
}

// appendISODate writes t's date, then the time of day us unless it is
// negative, as PostgreSQL reads them ("2024-02-29T12:34:56.789"); a year
// before 1 is written in the era form ("0044-03-15 12:00:00 BC").
func appendISODate(dst []byte, t time.Time, us int64) []byte {
	y := t.Year()
	if y <= 0 {
		y = 1 - y
	}
	dst = fmt.Appendf(dst, "%04d-%02d-%02d", y, t.Month(), t.Day())
	if us >= 0 {
		if t.Year() <= 0 {
			dst = append(dst, ' ')
		} else {
			dst = append(dst, 'T') // as events before Debezium's types had it
		}
		dst = appendClock(dst, us)
	}
	if t.Year() <= 0 {
		dst = append(dst, " BC"...)
	}
	return dst
}
