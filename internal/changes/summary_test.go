package changes

import "testing"

func TestSummary(t *testing.T) {
	cases := []struct {
		name string
		ev   Event
		want string
	}{
		{"upgrade", Event{Kind: "packages", Object: "curl:amd64", Action: Changed, Before: Object{"version": "1"}, After: Object{"version": "2"}},
			"packages: curl:amd64 upgraded from 1 to 2"},
		{"grouped upgrade", Event{Kind: KindFiles, Object: "package curl:amd64", Action: Changed,
			Before: Object{"version": "1"}, After: Object{"version": "2", "files_changed": "40"}},
			"files: 40 files changed by the upgrade of curl:amd64 from 1 to 2"},
		{"grouped install", Event{Kind: KindFiles, Object: "package curl:amd64", Action: Added, After: Object{"version": "2", "files_changed": "3"}},
			"files: 3 files installed by curl:amd64 2"},
		{"grouped removal", Event{Kind: KindFiles, Object: "package curl:amd64", Action: Removed, Before: Object{"version": "2"}, After: Object{"files_changed": "3"}},
			"files: 3 files removed with curl:amd64 2"},
		{"grouped reinstall", Event{Kind: KindFiles, Object: "package curl:amd64", Action: Changed, After: Object{"files_changed": "5", "verified": "checksum"}},
			"files: 5 files of curl:amd64 replaced by the package manager"},
		{"tampered", Event{Kind: KindFiles, Object: "/usr/bin/curl", Action: Changed, Tampered: true, After: Object{"package": "curl:amd64"}},
			"files: /usr/bin/curl TAMPERED: its content differs from package curl:amd64's checksum and no package transaction explains it"},
		{"plain file", Event{Kind: KindFiles, Object: "/etc/motd", Action: Changed, Before: Object{"size": "1"}, After: Object{"size": "2"}},
			`files: /etc/motd changed size: "1" -> "2"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ev.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}
