package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

// adminTokenPrefix marks Writ admin tokens so secret scanners can find them.
const adminTokenPrefix = "writ_admin_"

// newAdminToken returns "writ_admin_" + base64url(32 random bytes).
func newAdminToken(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	return adminTokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// nextPort returns host:(port+1) for addr, or host:0 when port is 0, so dev
// mode can put Raft beside the API without a second flag.
func nextPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: want host:port", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("address %q: bad port", addr)
	}
	if n == 0 {
		return net.JoinHostPort(host, "0"), nil
	}
	if n == 65535 {
		return "", fmt.Errorf("address %q: no port after %d", addr, n)
	}
	return net.JoinHostPort(host, strconv.FormatUint(n+1, 10)), nil
}

// devData is the example data `writ dev` loads, already in API form.
type devData struct {
	PolicySets []*writv1.PolicySet
	Identities []*writv1.Identity
	Roles      []*writv1.Role
}

// seedResult is what seeding produced for the banner.
type seedResult struct {
	PolicySets, Identities, Roles int
	// DemoRole is the role the walkthrough logs in through (with its
	// server-assigned role id); nil when no role takes AppRole logins.
	DemoRole *writv1.Role
	SecretID string
	Accessor string
}

// seedDev loads d through the admin API (the same calls an operator
// makes), then creates one secret id for the demo role.
func seedDev(ctx context.Context, c *clients, d devData) (*seedResult, error) {
	res := &seedResult{}
	for _, ps := range d.PolicySets {
		if _, err := c.admin.PutPolicySet(ctx, connect.NewRequest(&writv1.PutPolicySetRequest{PolicySet: ps})); err != nil {
			return nil, fmt.Errorf("policy set %s: %w", ps.GetName(), err)
		}
		res.PolicySets++
	}
	for _, id := range d.Identities {
		if _, err := c.admin.PutIdentity(ctx, connect.NewRequest(&writv1.PutIdentityRequest{Identity: id})); err != nil {
			return nil, fmt.Errorf("identity %s: %w", id.GetId(), err)
		}
		res.Identities++
	}
	stored := make([]*writv1.Role, 0, len(d.Roles))
	for _, r := range d.Roles {
		resp, err := c.admin.PutRole(ctx, connect.NewRequest(&writv1.PutRoleRequest{Role: r}))
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", r.GetName(), err)
		}
		stored = append(stored, resp.Msg.GetRole())
		res.Roles++
	}
	demo := pickDemoRole(stored, d.Identities)
	if demo == nil {
		return res, nil
	}
	resp, err := c.admin.CreateSecretID(ctx, connect.NewRequest(&writv1.CreateSecretIDRequest{
		Role: demo.GetName(), Metadata: map[string]string{"created_by": "writ dev"},
	}))
	if err != nil {
		return nil, fmt.Errorf("secret id for role %s: %w", demo.GetName(), err)
	}
	res.DemoRole, res.SecretID, res.Accessor = demo, resp.Msg.GetSecretId(), resp.Msg.GetAccessor()
	return res, nil
}

// pickDemoRole chooses the role the walkthrough uses: the first prod role
// bound to a CI job that accepts AppRole logins, preferring the example
// deploy identity; failing that any AppRole role.
func pickDemoRole(roles []*writv1.Role, identities []*writv1.Identity) *writv1.Role {
	kind := make(map[string]string, len(identities))
	for _, id := range identities {
		kind[id.GetId()] = id.GetKind()
	}
	approle := func(r *writv1.Role) bool {
		if len(r.GetAuthMethods()) == 0 {
			return true // the server's default is AppRole
		}
		for _, m := range r.GetAuthMethods() {
			if m == "approle" {
				return true
			}
		}
		return false
	}
	for _, pref := range []func(*writv1.Role) bool{
		func(r *writv1.Role) bool { return r.GetIdentity() == devExample.Identity },
		func(r *writv1.Role) bool { return r.GetEnvironment() == "prod" && kind[r.GetIdentity()] == "ci_job" },
		func(r *writv1.Role) bool { return r.GetEnvironment() == "prod" },
		func(*writv1.Role) bool { return true },
	} {
		for _, r := range roles {
			if approle(r) && pref(r) {
				return r
			}
		}
	}
	return nil
}

// exampleIntent is the walkthrough's request. It must be one the example
// prod policy set permits for the demo role.
type exampleIntent struct {
	Identity      string
	Action        string
	Resource      string
	ResourceAttrs []string // k=v, as --resource-attr takes them
	Context       string
}

// devExample follows policies/sets/prod.cedar: prod-ci-deploy-with-ticket
// permits a CiJob to deploy a Deployment its team owns with a CHG-* ticket
// and a pipeline run, and prod-environment-separation forbids anything whose
// resource.environment is not the principal's (prod). Writ stores no
// resources, so the caller states the resource's attributes.
// policies/dev.yaml: ci/deploy-api is a ci_job owned by "api" in prod.
var devExample = exampleIntent{
	Identity:      "ci/deploy-api",
	Action:        "deploy",
	Resource:      "Deployment::api-prod",
	ResourceAttrs: []string{"environment=prod", "owner=api", "service=api"},
	Context:       `{"ticket":"CHG-1234","pipeline_run":"local-1"}`,
}

// intentArgs renders ex as the writ flags for an intent, one flag group a
// line, ready to join with a shell line continuation.
func (ex exampleIntent) intentArgs() []string {
	lines := []string{"--action " + shellQuote(ex.Action) + " --resource " + shellQuote(ex.Resource)}
	if len(ex.ResourceAttrs) > 0 {
		var attrs []string
		for _, kv := range ex.ResourceAttrs {
			attrs = append(attrs, "--resource-attr "+shellQuote(kv))
		}
		lines = append(lines, strings.Join(attrs, " "))
	}
	if ex.Context != "" {
		lines = append(lines, "--context "+shellQuote(ex.Context))
	}
	return lines
}

// bannerData is everything the dev banner shows.
type bannerData struct {
	APIURL     string
	AdminToken string
	Seed       *seedResult
	Example    exampleIntent
}

// renderBanner returns the text `writ dev` prints once the node is ready:
// where it listens, the admin token, and a walkthrough that works when
// pasted into a POSIX shell.
func renderBanner(b bannerData) string {
	var s strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	w("")
	w("Writ dev node is ready. Data lives in a temporary directory, without fsync,")
	w("and is deleted on exit: never use dev mode for anything real.")
	w("")
	w("  API:          %s", b.APIURL)
	w("  Admin token:  %s", b.AdminToken)
	if sd := b.Seed; sd != nil {
		w("  Loaded:       %d policy sets, %d identities, %d roles (example data)", sd.PolicySets, sd.Identities, sd.Roles)
	}
	w("")
	w("In another shell:")
	w("")
	w("  export WRIT_ADDR=%s", shellQuote(b.APIURL))
	w("  export WRIT_TOKEN=%s", shellQuote(b.AdminToken))
	sd := b.Seed
	if sd == nil || sd.DemoRole == nil {
		w("")
		w("  writ status")
		w("  writ policy list")
		return s.String()
	}
	ex := b.Example
	r := sd.DemoRole
	w("")
	w("  # %s (role %s) proves who it is with AppRole, states its intent,", r.GetIdentity(), r.GetName())
	w("  # and gets a short-lived credential if the %s policies allow it:", orDash(r.GetEnvironment()))
	intent := ex.intentArgs()
	const cont = " \\\n      "
	w("  CRED=$(writ issue --role-id %s --secret-id %s%s%s --credential-only)",
		shellQuote(r.GetRoleId()), shellQuote(sd.SecretID), cont, strings.Join(intent, cont))
	w("")
	w("  # Is the credential live? (exit 0 active, 3 not)")
	w("  writ verify \"$CRED\"")
	w("")
	w("  # A gateway asks on every request: may it do this, now? (exit 0 allowed, 3 denied)")
	w("  writ authorize --credential \"$CRED\"%s%s", cont, strings.Join(intent, cont))
	w("")
	w("  # Revoke its lease; every node rejects the credential once this returns.")
	w("  LEASE=$(writ verify \"$CRED\" -o field=lease.id)")
	w("  writ revoke --lease \"$LEASE\" --reason 'walkthrough'")
	w("  writ verify \"$CRED\"    # inactive now: exit 3")
	w("")
	w("The secret id above is shown only here (accessor %s).", sd.Accessor)
	w("Press Ctrl-C to stop; the data directory is removed.")
	return s.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
