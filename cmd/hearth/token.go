package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/internal/config"
	"github.com/hearthlab/hearth/internal/logging"
	"github.com/hearthlab/hearth/relay/tokens"
)

// newTokenCmd is `hearth token create|list|set|revoke`: the relay's client tokens, kept in
// the relay's database. The running relay sees changes within a few seconds.
func newTokenCmd(g *globalFlags) *cobra.Command {
	var dbPath string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list, limit and revoke the tokens that phones and other clients use on the relay",
		Long: `Tokens let clients use the relay. Only a token's hash is stored: the secret is printed
once, by "create". The database is the relay's (db in --config, default ` + config.DefaultRelayPath + `);
--db PATH names it directly and skips loading the rest of the config.`,
	}
	cmd.PersistentFlags().StringVar(&dbPath, "db", "", "the relay's token database (default: db from the relay config)")
	open := func(c *cobra.Command) (*tokens.Store, error) { return openRelayStore(c, g, dbPath) }
	cmd.AddCommand(newTokenCreateCmd(open), newTokenListCmd(open), newTokenSetCmd(open), newTokenRevokeCmd(open))
	return cmd
}

type openStoreFunc func(*cobra.Command) (*tokens.Store, error)

// openRelayStore opens the relay's database as --db or the relay config names it.
func openRelayStore(c *cobra.Command, g *globalFlags, dbFlag string) (*tokens.Store, error) {
	path, err := tokenDBPath(g.config, dbFlag, c.ErrOrStderr())
	if err != nil {
		return nil, err
	}
	log, err := logging.New(c.ErrOrStderr(), g.logLevel, g.logFormat)
	if err != nil {
		return nil, err
	}
	return tokens.Open(path, log)
}

// tokenDBPath is --db, else db from the relay config; with no --config and no file at the
// default path, the relay's default database.
func tokenDBPath(configPath, dbFlag string, stderr io.Writer) (string, error) {
	if dbFlag != "" {
		return dbFlag, nil
	}
	if configPath == "" {
		if _, err := os.Stat(config.DefaultRelayPath); errors.Is(err, fs.ErrNotExist) {
			db := config.DefaultRelay().DB
			fmt.Fprintf(stderr, "no relay config at %s: using the default database %s (or pass --config FILE or --db PATH)\n",
				config.DefaultRelayPath, db)
			return db, nil
		}
		configPath = config.DefaultRelayPath
	}
	cfg, err := config.LoadRelay(configPath)
	if err != nil {
		return "", fmt.Errorf("%w\n(this command needs only the database: pass --db PATH to skip the rest of the config)", err)
	}
	return cfg.DB, nil
}

func newTokenCreateCmd(open openStoreFunc) *cobra.Command {
	var spec tokens.Spec
	var expires string
	cmd := &cobra.Command{
		Use:   "create --name NAME [--models 'qwen3:*,rag:*'] [--expires 90d] [--ollama-key \"ssh-ed25519 AAAA...\"] [--rpm N] [--tpm N] [--quota-tokens N] [--quota-cost X]",
		Short: "Create a token and print its secret, once",
		Example: `  hearth token create --name phone --models 'qwen3:*,rag:*' --expires 90d
  hearth token create --name laptop --ollama-key "$(cat ~/.ollama/id_ed25519.pub)"
  hearth token create --name kid --rpm 10 --tpm 20000 --quota-tokens 2000000 --quota-cost 5`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if spec.Expires, err = tokens.ParseLifetime(expires); err != nil {
				return fmt.Errorf("--expires %w", err)
			}
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			secret, tok, err := st.Create(cmd.Context(), spec)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Created token %q (%s): models %s, expires %s, limits: %s.\n\n    %s\n\n", tok.Name, tok.ID,
				modelsText(tok.Models), whenText(tok.ExpiresAt, "never"), limitsText(tok.Limits(), "the relay's defaults"), secret)
			fmt.Fprintln(out, "Copy it now: it will not be shown again (the relay keeps only its hash).")
			fmt.Fprintln(out, "Clients send it as: Authorization: Bearer <token>")
			if tok.OllamaKey != "" {
				fmt.Fprintf(out, "The ollama CLI with key %s may also sign in: OLLAMA_AUTH=1 OLLAMA_HOST=https://<relay domain> ollama list\n",
					tok.OllamaKeyFingerprint)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "a name for the client, e.g. phone (required; unique among live tokens)")
	f.StringSliceVar(&spec.Models, "models", nil, "globs of the models the token may use, comma-separated, e.g. 'qwen3:*,rag:*' (default all)")
	f.StringVar(&expires, "expires", "", "lifetime, e.g. 90d, 12h, 30m (default never)")
	f.StringVar(&spec.OllamaKey, "ollama-key", "", "an ssh-ed25519 public key line (~/.ollama/id_ed25519.pub) the ollama CLI signs with")
	f.IntVar(&spec.RPM, "rpm", 0, "requests per minute (default limits.requests_per_minute of the relay config)")
	f.IntVar(&spec.TPM, "tpm", 0, "prompt + completion tokens per minute (default no limit)")
	f.Int64Var(&spec.MonthlyTokens, "quota-tokens", 0, "prompt + completion tokens per calendar month, UTC (default no quota)")
	f.Float64Var(&spec.MonthlyCost, "quota-cost", 0, "cost per calendar month, UTC, in the unit of prices in the relay config (default no quota)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newTokenSetCmd(open openStoreFunc) *cobra.Command {
	var l tokens.Limits
	cmd := &cobra.Command{
		Use:   "set NAME|ID [--rpm N] [--tpm N] [--quota-tokens N] [--quota-cost X]",
		Short: "Change a token's limits (0 = the relay's default rpm, or no limit); the secret stays the same",
		Example: `  hearth token set phone --quota-tokens 2000000
  hearth token set kid --rpm 0 --quota-cost 10`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			if !(f.Changed("rpm") || f.Changed("tpm") || f.Changed("quota-tokens") || f.Changed("quota-cost")) {
				return errors.New("say what to change: --rpm, --tpm, --quota-tokens or --quota-cost")
			}
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			tok, err := st.SetLimits(cmd.Context(), args[0], func(cur *tokens.Limits) {
				if f.Changed("rpm") {
					cur.RPM = l.RPM
				}
				if f.Changed("tpm") {
					cur.TPM = l.TPM
				}
				if f.Changed("quota-tokens") {
					cur.MonthlyTokens = l.MonthlyTokens
				}
				if f.Changed("quota-cost") {
					cur.MonthlyCost = l.MonthlyCost
				}
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Token %q (%s) now has limits: %s. The running relay applies them within a few seconds.\n",
				tok.Name, tok.ID, limitsText(tok.Limits(), "the relay's defaults"))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&l.RPM, "rpm", 0, "requests per minute; 0 = limits.requests_per_minute of the relay config")
	f.IntVar(&l.TPM, "tpm", 0, "prompt + completion tokens per minute; 0 = no limit")
	f.Int64Var(&l.MonthlyTokens, "quota-tokens", 0, "prompt + completion tokens per calendar month, UTC; 0 = no quota")
	f.Float64Var(&l.MonthlyCost, "quota-cost", 0, "cost per calendar month, UTC, in the unit of the relay config's prices; 0 = no quota")
	return cmd
}

// limitsText says a token's limits in a few words.
func limitsText(l tokens.Limits, none string) string {
	var parts []string
	if l.RPM > 0 {
		parts = append(parts, humanize.Comma(int64(l.RPM))+" requests/min")
	}
	if l.TPM > 0 {
		parts = append(parts, humanize.Comma(int64(l.TPM))+" tokens/min")
	}
	if l.MonthlyTokens > 0 {
		parts = append(parts, humanize.Comma(l.MonthlyTokens)+" tokens/month")
	}
	if l.MonthlyCost > 0 {
		parts = append(parts, strconv.FormatFloat(l.MonthlyCost, 'f', -1, 64)+" cost/month")
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, ", ")
}

func newTokenListCmd(open openStoreFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			toks, err := st.List(cmd.Context())
			if err != nil {
				return err
			}
			renderTokens(cmd.OutOrStdout(), toks, time.Now())
			return nil
		},
	}
}

func newTokenRevokeCmd(open openStoreFunc) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke NAME|ID",
		Short: "Revoke a token: the running relay refuses it within a few seconds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.Revoke(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Revoked %s: the running relay refuses it within a few seconds.\n", args[0])
			return nil
		},
	}
}

// renderTokens prints the token table; times are UTC, like the relay's messages. The LIMITS
// column is there when some token has limits of its own.
func renderTokens(w io.Writer, toks []tokens.Token, now time.Time) {
	if len(toks) == 0 {
		fmt.Fprintln(w, "No tokens yet: create one with `hearth token create --name NAME`.")
		return
	}
	limits := slices.ContainsFunc(toks, func(t tokens.Token) bool { return t.Limits() != tokens.Limits{} })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "NAME\tID\tMODELS\tEXPIRES\tCREATED\tLAST USED\tREVOKED\tOLLAMA KEY"
	if limits {
		header += "\tLIMITS"
	}
	fmt.Fprintln(tw, header)
	for _, t := range toks {
		expires := whenText(t.ExpiresAt, "never")
		if t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) {
			expires += " (expired)"
		}
		key := "-"
		if t.OllamaKeyFingerprint != "" {
			key = t.OllamaKeyFingerprint
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", t.Name, t.ID, modelsText(t.Models), expires,
			whenText(&t.CreatedAt, "-"), whenText(t.LastUsedAt, "never"), whenText(t.RevokedAt, "-"), key)
		if limits {
			line += "\t" + limitsText(t.Limits(), "-")
		}
		fmt.Fprintln(tw, line)
	}
	_ = tw.Flush()
}

func modelsText(models []string) string {
	if len(models) == 0 {
		return "all"
	}
	return strings.Join(models, ",")
}

func whenText(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format("2006-01-02 15:04")
}
