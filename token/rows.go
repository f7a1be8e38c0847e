package token

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/api"
)

// row is one token as the api_tokens table has it.
type row struct {
	id, name, tenant string
	allTenants       bool
	role             api.Role
	hash, keyID      string
	createdAt        time.Time
	createdBy        string
	expiresAt        time.Time
	revokedAt        time.Time // zero: not revoked
	revokedBy        string
	version          uint64
}

// insertTokenSQL writes one row with INSERT ... SELECT, which both
// engines run through Exec (18.16 waits for data after INSERT ... VALUES
// sent as a query). Every value is a bound argument.
const insertTokenSQL = "INSERT INTO api_tokens (id, name, tenant, all_tenants, role, hash, key_id, created_at, created_by, expires_at, revoked_at, revoked_by, version) " +
	"SELECT ?, ?, ?, ?, ?, ?, ?, toDateTime(?), ?, toDateTime(?), toDateTime(?), ?, ?"

func (s *Store) insert(ctx context.Context, r row) error {
	var all uint8
	if r.allTenants {
		all = 1
	}
	err := s.deps.DB.Exec(ctx, insertTokenSQL, r.id, r.name, r.tenant, all, string(r.role), r.hash, r.keyID,
		unix(r.createdAt), r.createdBy, unix(r.expiresAt), unix(r.revokedAt), r.revokedBy, r.version)
	if err != nil {
		return fmt.Errorf("tokens: write token %s: %w", r.id, err)
	}
	return nil
}

// tokenColumns are read as the newest value of each token (argMax over
// version): rows are never updated, a change is a new row.
var tokenColumns = []string{"name", "tenant", "all_tenants", "role", "hash", "key_id",
	"created_at", "created_by", "expires_at", "revoked_at", "revoked_by"}

var timeColumns = map[string]bool{"created_at": true, "expires_at": true, "revoked_at": true}

// latestSQL selects the newest row of each token matching cond, a
// condition on columns that never change (id, tenant, all_tenants,
// hash), the oldest token first.
func latestSQL(cond string) string {
	cols := make([]string, len(tokenColumns))
	for i, c := range tokenColumns {
		cols[i] = fmt.Sprintf("argMax(%s, version)", c)
		if timeColumns[c] {
			cols[i] = "toUInt32(" + cols[i] + ")"
		}
		cols[i] += " AS l_" + c
	}
	return "SELECT id, " + strings.Join(cols, ", ") + ", max(version) AS l_version FROM api_tokens WHERE " + cond +
		" GROUP BY id ORDER BY l_created_at, id"
}

func (s *Store) rows(ctx context.Context, cond string, args ...any) ([]row, error) {
	rs, err := s.deps.DB.Query(ctx, latestSQL(cond), args...)
	if err != nil {
		return nil, fmt.Errorf("tokens: read tokens: %w", err)
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var (
			r                         row
			all                       uint8
			role                      string
			created, expires, revoked uint32
		)
		if err := rs.Scan(&r.id, &r.name, &r.tenant, &all, &role, &r.hash, &r.keyID,
			&created, &r.createdBy, &expires, &revoked, &r.revokedBy, &r.version); err != nil {
			return nil, fmt.Errorf("tokens: read tokens: %w", err)
		}
		r.allTenants, r.role = all != 0, api.Role(role)
		r.createdAt, r.expiresAt, r.revokedAt = fromUnix(created), fromUnix(expires), fromUnix(revoked)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("tokens: read tokens: %w", err)
	}
	return out, nil
}

// lastUsed is the latest use of each token matching cond (on
// api_tokens' columns).
func (s *Store) lastUsed(ctx context.Context, cond string, args []any) (map[string]time.Time, error) {
	rs, err := s.deps.DB.Query(ctx, "SELECT id, toUInt32(max(last_used_at)) FROM api_token_usage"+
		" WHERE id IN (SELECT id FROM api_tokens WHERE "+cond+") GROUP BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("tokens: read last uses: %w", err)
	}
	defer rs.Close()
	out := map[string]time.Time{}
	for rs.Next() {
		var id string
		var at uint32
		if err := rs.Scan(&id, &at); err != nil {
			return nil, fmt.Errorf("tokens: read last uses: %w", err)
		}
		out[id] = fromUnix(at)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("tokens: read last uses: %w", err)
	}
	return out, nil
}

// insertUsageSQL writes many last uses in one statement: bound arrays,
// ARRAY JOINed.
const insertUsageSQL = "INSERT INTO api_token_usage (id, last_used_at) SELECT a0, toDateTime(a1) FROM (SELECT ? AS a0, ? AS a1) ARRAY JOIN a0, a1"

func (s *Store) writeUsage(ctx context.Context, used map[string]time.Time) error {
	ids := make([]string, 0, len(used))
	ats := make([]uint32, 0, len(used))
	for id, at := range used {
		ids, ats = append(ids, id), append(ats, unix(at))
	}
	if err := s.deps.DB.Exec(ctx, insertUsageSQL, ids, ats); err != nil {
		return fmt.Errorf("tokens: write last uses of %d tokens: %w", len(ids), err)
	}
	return nil
}

func unix(t time.Time) uint32 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint32(t.Unix())
}

func fromUnix(s uint32) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0).UTC()
}
