package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/structpb"

	writv1 "github.com/writ-dev/writ/rpc/gen/writ/v1"
)

const envRoleID = "WRIT_ROLE_ID"

// intentFlags are the flags that describe what the caller is about to do.
type intentFlags struct {
	action, resource, context string
	resourceAttrs             []string
}

func (f *intentFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.action, "action", "", "the action, e.g. deploy")
	fl.StringVar(&f.resource, "resource", "", "the resource as TYPE::ID, e.g. Deployment::api-prod")
	fl.StringArrayVar(&f.resourceAttrs, "resource-attr", nil, "resource attribute key=value, or key:=JSON for a typed value (repeatable)")
	fl.StringVar(&f.context, "context", "", `request context as a JSON object, @FILE, or @- for stdin, e.g. '{"ticket":"CHG-1234"}'`)
	_ = cmd.MarkFlagRequired("action")
	_ = cmd.MarkFlagRequired("resource")
}

// parse returns the action, resource and context, with usage errors.
func (f *intentFlags) parse(stdin io.Reader) (string, *writv1.Resource, *structpb.Struct, error) {
	action := strings.TrimSpace(f.action)
	if action == "" {
		return "", nil, nil, usagef("--action is empty")
	}
	typ, id, err := parseResource(f.resource)
	if err != nil {
		return "", nil, nil, flagErr("resource", err)
	}
	attrs, err := parseAttrs(f.resourceAttrs)
	if err != nil {
		return "", nil, nil, flagErr("resource-attr", err)
	}
	ctx, err := parseContext(f.context, stdin)
	if err != nil {
		return "", nil, nil, flagErr("context", err)
	}
	return action, &writv1.Resource{Type: typ, Id: id, Attributes: attrs}, ctx, nil
}

func (a *app) issueCmd() *cobra.Command {
	var (
		in               intentFlags
		roleID, secretID string
		role, jwtArg     string
		useMTLS          bool
		requestID        string
		ttl              int64
		credentialOnly   bool
	)
	cmd := &cobra.Command{
		Use:   "issue (--role-id ID --secret-id SECRET | --role ROLE --jwt TOKEN | --role ROLE --mtls) --action A --resource TYPE::ID",
		Short: "Log in, state an intent, and get a short-lived credential if policy allows",
		Long: `AuthorizeAndIssue: prove who you are, say what you are about to do, and
receive a credential for exactly that when the Cedar policies allow it. A
denial exits 3 and prints the determining policies.

Proofs: AppRole (--role-id and --secret-id), a JWT through a role (--role and
--jwt: a Kubernetes service-account token, a CI OIDC token, a SPIFFE
JWT-SVID), or the client certificate of this very connection through a role
(--role and --mtls, with --client-cert/--client-key over https). The decision
shows the evidence policies saw as context.auth.`,
		Example: `  CRED=$(writ issue --role-id "$ROLE_ID" --secret-id "$SECRET_ID" \
      --action deploy --resource Deployment::api-prod \
      --resource-attr environment=prod --resource-attr owner=api \
      --context '{"ticket":"CHG-1234","pipeline_run":"run-981"}' --credential-only)
  writ issue --role ci --jwt "$ACTIONS_ID_TOKEN" --action deploy --resource Deployment::api-prod
  writ --addr https://writ:7400 --client-cert svid.pem --client-key svid.key \
      issue --role mesh --mtls --action call_tool --resource Tool::kb.search`,
		Args: noArgs,
	}
	in.add(cmd)
	f := cmd.Flags()
	f.StringVar(&roleID, "role-id", "", "AppRole role id (env "+envRoleID+")")
	f.StringVar(&secretID, "secret-id", "", "AppRole secret id, or - for stdin (env "+envSecretID+")")
	f.StringVar(&role, "role", "", "jwt/mtls: the role to log in through")
	f.StringVar(&jwtArg, "jwt", "", "jwt: the token, @FILE, or - for stdin (env "+envJWT+")")
	f.BoolVar(&useMTLS, "mtls", false, "mtls: prove who you are with the client certificate (--client-cert, --client-key)")
	cmd.MarkFlagsMutuallyExclusive("jwt", "mtls", "secret-id")
	cmd.MarkFlagsMutuallyExclusive("jwt", "mtls", "role-id")
	secondsFlag(cmd, &ttl, "ttl", "requested lease TTL, e.g. 10m (default: the role's)")
	f.StringVar(&requestID, "request-id", "", "idempotency key: a retry with the same id returns the same lease")
	f.BoolVar(&credentialOnly, "credential-only", false, "print only the credential (for CRED=$(writ issue ...))")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		proof, err := a.issueProof(roleID, secretID, role, jwtArg, useMTLS, in.context == "@-")
		if err != nil {
			return err
		}
		action, res, cctx, err := in.parse(a.stdin)
		if err != nil {
			return err
		}
		resp, err := c.authz.AuthorizeAndIssue(ctx, connect.NewRequest(&writv1.AuthorizeAndIssueRequest{
			Proof:     proof,
			Intent:    &writv1.Intent{Action: action, Resource: res, Context: cctx, TtlSeconds: ttl},
			RequestId: requestID,
		}))
		if err != nil {
			return err
		}
		m := resp.Msg
		allowed := m.GetDecision().GetAllowed() && m.GetCredential() != ""
		if credentialOnly {
			if !allowed {
				// Keep stdout empty so $(...) captures nothing; say why on stderr.
				ep := &printer{w: a.stderr, format: outputFormat{kind: "text"}, now: a.now}
				_ = ep.emit(m, func(t *textOut) { decisionText(t, m.GetDecision()) })
				return errNegative
			}
			_, err := fmt.Fprintln(a.stdout, m.GetCredential())
			return err
		}
		if err := p.emit(m, func(t *textOut) {
			decisionText(t, m.GetDecision())
			if l := m.GetLease(); l != nil {
				t.kv("lease", l.GetId())
				t.kv("identity", l.GetIdentity())
				t.kv("expires", t.time(l.GetExpiresAt()))
			}
			if m.GetIndex() != 0 {
				t.kv("index", m.GetIndex())
			}
			if m.GetCredential() != "" {
				t.line("")
				t.line(m.GetCredential())
			}
		}); err != nil {
			return err
		}
		if !allowed {
			return errNegative
		}
		return nil
	})
	return cmd
}

func (a *app) authorizeCmd() *cobra.Command {
	var (
		in   intentFlags
		rf   readFlags
		cred string
	)
	cmd := &cobra.Command{
		Use:   "authorize --credential CRED --action A --resource TYPE::ID",
		Short: "Check a credential for one action on one resource, now (exit 3 when denied)",
		Example: `  writ authorize --credential "$CRED" --action deploy --resource Deployment::api-prod \
      --resource-attr environment=prod --resource-attr owner=api \
      --context '{"ticket":"CHG-1234","pipeline_run":"run-981"}' && echo go`,
		Args: noArgs,
	}
	in.add(cmd)
	rf.add(cmd)
	cmd.Flags().StringVar(&cred, "credential", "", "the credential, or - for stdin (env "+envCredential+")")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		credential, err := readSecretArg("credential", cred, a.stdin, a.getenv, envCredential)
		if err != nil {
			return flagErr("credential", err)
		}
		if cred == "-" && in.context == "@-" {
			return usagef("--credential - and --context @- both want stdin")
		}
		action, res, cctx, err := in.parse(a.stdin)
		if err != nil {
			return err
		}
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.authz.Authorize(ctx, connect.NewRequest(&writv1.AuthorizeRequest{
			Credential: credential, Action: action, Resource: res, Context: cctx, Read: ro,
			IncludeAuth: true, // a person at a terminal wants the evidence Cedar saw
		}))
		if err != nil {
			return err
		}
		m := resp.Msg
		if err := p.emit(m, func(t *textOut) {
			decisionText(t, m.GetDecision())
			t.kvIf("lease", m.GetLeaseId())
			t.kv("applied index", m.GetAppliedIndex())
		}); err != nil {
			return err
		}
		if !m.GetDecision().GetAllowed() {
			return errNegative
		}
		return nil
	})
	return cmd
}

func (a *app) verifyCmd() *cobra.Command {
	var rf readFlags
	cmd := &cobra.Command{
		Use:   "verify [CREDENTIAL|-]",
		Short: "Introspect a credential: is its lease live? (exit 3 when not)",
		Long: `Verify a credential's signature and its lease in the replicated state. With
no argument the credential comes from ` + envCredential + `; with - from stdin.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one argument (CREDENTIAL or -)", cmd.CommandPath())
			}
			return nil
		},
	}
	rf.add(cmd)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		arg := ""
		if len(args) == 1 {
			arg = args[0]
		}
		credential, err := readSecretArg("credential", arg, a.stdin, a.getenv, envCredential)
		if err != nil {
			return &usageError{err: err}
		}
		ro, err := rf.options()
		if err != nil {
			return err
		}
		resp, err := c.authz.Verify(ctx, connect.NewRequest(&writv1.VerifyRequest{Credential: credential, Read: ro}))
		if err != nil {
			return err
		}
		m := resp.Msg
		if err := p.emit(m, func(t *textOut) {
			if m.GetActive() {
				t.kv("active", "yes")
			} else {
				t.kv("active", "no")
				t.kv("reason", orDash(m.GetReason()))
			}
			if m.GetLease() != nil {
				leaseText(t, m.GetLease())
			}
			t.kv("applied index", m.GetAppliedIndex())
		}); err != nil {
			return err
		}
		if !m.GetActive() {
			return errNegative
		}
		return nil
	})
	return cmd
}

func (a *app) renewCmd() *cobra.Command {
	var (
		ttl            int64
		cctxArg        string
		credentialOnly bool
	)
	cmd := &cobra.Command{
		Use:   "renew CREDENTIAL|-",
		Short: "Extend a lease within its role's limits (a fresh authorization)",
		Args:  exactArgs("CREDENTIAL"),
	}
	secondsFlag(cmd, &ttl, "ttl", "requested TTL from now, e.g. 10m (default: the role's)")
	cmd.Flags().StringVar(&cctxArg, "context", "", "request context as a JSON object, @FILE, or @- for stdin")
	cmd.Flags().BoolVar(&credentialOnly, "credential-only", false, "print only the new credential")
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, args []string) error {
		credential, err := readSecretArg("credential", args[0], a.stdin, a.getenv, "")
		if err != nil {
			return &usageError{err: err}
		}
		if args[0] == "-" && cctxArg == "@-" {
			return usagef("the credential - and --context @- both want stdin")
		}
		cctx, err := parseContext(cctxArg, a.stdin)
		if err != nil {
			return flagErr("context", err)
		}
		resp, err := c.authz.Renew(ctx, connect.NewRequest(&writv1.RenewRequest{Credential: credential, TtlSeconds: ttl, Context: cctx}))
		if err != nil {
			return err
		}
		m := resp.Msg
		allowed := m.GetDecision() == nil || m.GetDecision().GetAllowed()
		if credentialOnly && allowed && m.GetCredential() != "" {
			_, err := fmt.Fprintln(a.stdout, m.GetCredential())
			return err
		}
		w := p
		if credentialOnly {
			w = &printer{w: a.stderr, format: outputFormat{kind: "text"}, now: a.now}
		}
		if err := w.emit(m, func(t *textOut) {
			if m.GetDecision() != nil {
				decisionText(t, m.GetDecision())
			}
			if l := m.GetLease(); l != nil {
				t.kv("lease", l.GetId())
				t.kv("expires", t.time(l.GetExpiresAt()))
				t.kv("renewals", l.GetRenewals())
			}
			if m.GetIndex() != 0 {
				t.kv("index", m.GetIndex())
			}
			if m.GetCredential() != "" {
				t.line("")
				t.line(m.GetCredential())
			}
		}); err != nil {
			return err
		}
		if !allowed {
			return errNegative
		}
		return nil
	})
	return cmd
}

func (a *app) revokeCmd() *cobra.Command {
	var lease, identity, role, owner, subtree, cred, reason string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "revoke (--lease ID | --identity ID | --role NAME | --owner OWNER | --subtree ID | --credential CRED)",
		Short: "Revoke a lease, everything an identity, role or owner holds, a delegation subtree, or your own credential",
		Long: `Revoke one lease and everything delegated from it (admin), every lease an
identity, role or owner holds (admin; one epoch bump), every lease delegated
from a lease while keeping that lease (--subtree, admin), or the lease behind
a credential you hold (no token needed: it is completed). Each is one log
entry whatever the number of leases. Returns once every node in contact with
the leader has applied the revocation. --dry-run prints how many live leases
it would hit (the blast radius) and changes nothing.`,
		Example: `  writ revoke --lease l_01HZX... --reason "job finished"
  writ revoke --identity ci/deploy-api --reason "secret leaked"
  writ revoke --owner team-payments --dry-run
  writ revoke --subtree l_01HZX... --reason "tool misbehaved"
  writ revoke --credential "$CRED"`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&lease, "lease", "", "lease id: the lease and everything delegated from it")
	f.StringVar(&identity, "identity", "", "identity id: revoke everything it holds")
	f.StringVar(&role, "role", "", "role name: revoke everything issued through it")
	f.StringVar(&owner, "owner", "", "owner: revoke everything its identities hold")
	f.StringVar(&subtree, "subtree", "", "lease id: revoke everything delegated from it, keep the lease")
	f.StringVar(&cred, "credential", "", "a credential you hold, or - for stdin")
	f.StringVar(&reason, "reason", "", "why, for the audit log")
	f.BoolVar(&dryRun, "dry-run", false, "count the live leases the revocation would hit; change nothing")
	targets := []string{"lease", "identity", "role", "owner", "subtree", "credential"}
	cmd.MarkFlagsMutuallyExclusive(targets...)
	cmd.MarkFlagsOneRequired(targets...)
	cmd.RunE = a.call(func(ctx context.Context, c *clients, p *printer, _ []string) error {
		req := &writv1.RevokeRequest{Reason: reason, DryRun: dryRun}
		var what string
		switch {
		case lease != "":
			req.Target, what = &writv1.RevokeRequest_LeaseId{LeaseId: strings.TrimSpace(lease)}, "lease "+lease
		case identity != "":
			req.Target, what = &writv1.RevokeRequest_Identity{Identity: strings.TrimSpace(identity)}, "identity "+identity
		case role != "":
			req.Target, what = &writv1.RevokeRequest_Role{Role: strings.TrimSpace(role)}, "role "+role
		case owner != "":
			req.Target, what = &writv1.RevokeRequest_Owner{Owner: strings.TrimSpace(owner)}, "owner "+owner
		case subtree != "":
			req.Target, what = &writv1.RevokeRequest_Subtree{Subtree: strings.TrimSpace(subtree)}, "subtree of "+subtree
		default:
			credential, err := readSecretArg("credential", cred, a.stdin, a.getenv, "")
			if err != nil {
				return flagErr("credential", err)
			}
			req.Target, what = &writv1.RevokeRequest_Credential{Credential: credential}, "credential"
		}
		resp, err := c.authz.Revoke(ctx, connect.NewRequest(req))
		if err != nil {
			return err
		}
		return p.emit(resp.Msg, func(t *textOut) {
			if resp.Msg.GetDryRun() {
				t.kv("would revoke", what)
				t.kv("live leases", resp.Msg.GetLiveLeases())
				t.kv("applied index", resp.Msg.GetAppliedIndex())
				return
			}
			t.kv("revoked", what)
			t.kv("index", resp.Msg.GetIndex())
		})
	})
	return cmd
}

// issueProof picks the login method from the flags: --jwt or --mtls with
// --role, else AppRole.
func (a *app) issueProof(roleID, secretID, role, jwtArg string, useMTLS, contextFromStdin bool) (*writv1.Proof, error) {
	role = strings.TrimSpace(role)
	if jwtArg == "" && !useMTLS && roleID == "" && secretID == "" && a.getenv(envJWT) != "" {
		jwtArg = a.getenv(envJWT)
	}
	switch {
	case jwtArg != "":
		if role == "" {
			return nil, usagef("--jwt needs --role (the role to log in through)")
		}
		if jwtArg == "-" && contextFromStdin {
			return nil, usagef("--jwt - and --context @- both want stdin")
		}
		tok := jwtArg
		if name, ok := strings.CutPrefix(jwtArg, "@"); ok {
			b, err := readInput(name, a.stdin)
			if err != nil {
				return nil, flagErr("jwt", err)
			}
			tok = string(b)
		}
		tok, err := readSecretArg("jwt", tok, a.stdin, a.getenv, "")
		if err != nil {
			return nil, flagErr("jwt", err)
		}
		return &writv1.Proof{Method: &writv1.Proof_Jwt{Jwt: &writv1.JWTProof{Role: role, Token: tok}}}, nil
	case useMTLS:
		if role == "" {
			return nil, usagef("--mtls needs --role (the role to log in through)")
		}
		return &writv1.Proof{Method: &writv1.Proof_Mtls{Mtls: &writv1.MTLSProof{Role: role}}}, nil
	}
	if role != "" {
		return nil, usagef("--role goes with --jwt or --mtls; AppRole logins use --role-id")
	}
	if roleID == "" {
		roleID = a.getenv(envRoleID)
	}
	if roleID = strings.TrimSpace(roleID); roleID == "" {
		return nil, usagef("--role-id is required (or %s), or log in with --role and --jwt or --mtls", envRoleID)
	}
	sid, err := readSecretArg("secret id", secretID, a.stdin, a.getenv, envSecretID)
	if err != nil {
		return nil, flagErr("secret-id", err)
	}
	return &writv1.Proof{Method: &writv1.Proof_Approle{Approle: &writv1.AppRoleProof{RoleId: roleID, SecretId: sid}}}, nil
}

// authText renders decision.auth on one line: key=value, claims as
// claims.name=value, sorted.
func authText(st *structpb.Struct) string {
	if st == nil {
		return ""
	}
	var parts []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch x := v.(type) {
			case map[string]any:
				walk(prefix+k+".", x)
			default:
				parts = append(parts, fmt.Sprintf("%s%s=%v", prefix, k, x))
			}
		}
	}
	walk("", st.AsMap())
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// decisionText prints a decision: verdict, determining policies, reason.
func decisionText(t *textOut, d *writv1.Decision) {
	if d.GetAllowed() {
		t.kv("decision", "allowed")
	} else {
		t.kv("decision", "denied")
	}
	names := make([]string, 0, len(d.GetDeterminingPolicies()))
	for _, dp := range d.GetDeterminingPolicies() {
		names = append(names, policyName(dp))
	}
	t.kv("policies", orDash(strings.Join(names, ", ")))
	t.kvIf("reason", d.GetReason())
	explainText(t, d)
	for _, e := range d.GetErrors() {
		t.kv("error", e)
	}
	if d.GetPolicySet() != "" {
		t.kv("policy set", fmt.Sprintf("%s v%d", d.GetPolicySet(), d.GetPolicyVersion()))
	}
	t.kvIf("auth", authText(d.GetAuth()))
	t.kvIf("decision id", d.GetDecisionId())
}

// policyName prefers the policy's @id annotation over its positional id.
func policyName(dp *writv1.DeterminingPolicy) string {
	if at := dp.GetAnnotations()["id"]; at != "" && at != dp.GetId() {
		return at + " [" + dp.GetId() + "]"
	}
	return dp.GetId()
}
