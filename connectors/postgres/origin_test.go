package postgres

import "testing"

func TestIsOwnOrigin(t *testing.T) {
	for name, want := range map[string]bool{"scoop": true, "scoop_1": true, "scoop_15": true, "scoop_": false, "scoop_x": false, "scoopy": false, "other": false, "pg_123": false} {
		if got := isOwnOrigin(name, "scoop"); got != want {
			t.Errorf("isOwnOrigin(%q) = %v, want %v", name, got, want)
		}
	}
}
