package chtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
)

// The server listens on the native port only: no HTTP, no interserver
// port, so two test binaries never fight over fixed ports. Caches are
// small because test data is tiny and several servers may run at once.
// The root element is <yandex>, which 18.16 requires and current servers
// still accept.
var configTemplate = template.Must(template.New("config.xml").Parse(`<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{{.Dir}}/log/server.log</log>
        <errorlog>{{.Dir}}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{{.Port}}</tcp_port>
    <path>{{.Dir}}/data/</path>
    <tmp_path>{{.Dir}}/tmp/</tmp_path>
    <user_files_path>{{.Dir}}/user_files/</user_files_path>
    <format_schema_path>{{.Dir}}/format_schemas/</format_schema_path>
    <users_config>{{.Dir}}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>200</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
{{.Extra}}</yandex>
`))

// PasswordUser and Password are a user of every test server that needs
// a password, for tests of how flowhouse sends one. The server listens on
// loopback only and lives as long as its test binary.
const (
	PasswordUser = "flowhouse_password"
	Password     = "chtest-password"
)

// usersXML is users.xml with profileSettings added to the default profile.
func usersXML(profileSettings string) string {
	return `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
` + profileSettings + `        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <` + PasswordUser + `>
            <password>` + Password + `</password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </` + PasswordUser + `>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`
}

func writeConfig(dir string, port int, extra, profileSettings string) error {
	if strings.ContainsAny(dir, "<>&") {
		return fmt.Errorf("chtest: temp dir %q cannot be written into XML", dir)
	}
	for _, sub := range []string{"data", "tmp", "log", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return fmt.Errorf("chtest: %w", err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "config.xml"))
	if err != nil {
		return fmt.Errorf("chtest: %w", err)
	}
	if err := configTemplate.Execute(f, struct {
		Dir   string
		Port  int
		Extra string
	}{dir, port, extra}); err != nil {
		f.Close()
		return fmt.Errorf("chtest: write config.xml: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("chtest: write config.xml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(usersXML(profileSettings)), 0o644); err != nil {
		return fmt.Errorf("chtest: write users.xml: %w", err)
	}
	return nil
}
