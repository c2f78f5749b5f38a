package alert

import "testing"

// TestServiceUnit checks how a service-scope override finds the unit a per-unit rule's series carry.
func TestServiceUnit(t *testing.T) {
	for _, c := range []struct {
		per, name, target string
		want              string
		ok                bool
	}{
		{"service", "nginx", "https://shop.example/", "nginx", true},
		{"group", "postgres", "", "postgres", true},
		{"group", "", "", "", false},
		{"port", "web", "https://shop.example/", "443", true},
		{"port", "web", "http://shop.example/", "80", true},
		{"port", "web", "http://shop.example:8080/x", "8080", true},
		{"port", "db", "db1:5432", "5432", true},
		{"port", "db", "db1", "", false},
		{"target", "web", "https://shop.example/", "https://shop.example/", true},
		{"target", "web", "", "", false},
		{"mountpoint", "web", "https://shop.example/", "", false},
	} {
		got, ok := serviceUnit(c.per, c.name, c.target)
		if got != c.want || ok != c.ok {
			t.Errorf("serviceUnit(%q, %q, %q) = %q, %v; want %q, %v", c.per, c.name, c.target, got, ok, c.want, c.ok)
		}
	}
}
