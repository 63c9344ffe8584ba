package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"github.com/hearthlab/hearth/relay/usage"
)

var usageGroupings = []string{"day", "token", "channel", "model"}

// newUsageCmd is `hearth usage`: what went through the relay, read from its database (the
// running relay writes it every second or so).
func newUsageCmd(g *globalFlags) *cobra.Command {
	var dbPath, by, since string
	cmd := &cobra.Command{
		Use:   "usage [--by day|token|channel|model] [--since 7d] [--db PATH]",
		Short: "Show what went through the relay: requests, errors, tokens, cost and latency",
		Long: `Usage adds up the relay's usage log: one record per request, with the tokens the upstream
counted (or an estimate, shown as ESTIMATED, when it gave none) and the cost by the prices in
the relay config when the request was made. The database is the relay's (db in --config,
default the relay's default); --db PATH names it directly.`,
		Example: `  hearth usage
  hearth usage --by model --since 30d
  hearth usage --by token --since 2026-03-01 --db /var/lib/hearth/relay.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains(usageGroupings, by) {
				return fmt.Errorf("--by %q: use %s", by, strings.Join(usageGroupings, ", "))
			}
			from, err := usage.ParseSince(since, time.Now())
			if err != nil {
				return fmt.Errorf("--%w", err)
			}
			st, err := openRelayStore(cmd, g, dbPath)
			if err != nil {
				return err
			}
			defer st.Close()
			rows, err := usage.Read(cmd.Context(), st, by, from)
			if err != nil {
				return err
			}
			renderUsage(cmd.OutOrStdout(), by, from, rows)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&by, "by", "day", "group by day, token, channel or model")
	f.StringVar(&since, "since", usage.DefaultSince, "from when: a period back from now (7d, 12h), a date (2026-03-01, UTC) or all")
	f.StringVar(&dbPath, "db", "", "the relay's database (default: db from the relay config)")
	return cmd
}

// renderUsage prints the summary table and a total line.
func renderUsage(w io.Writer, by string, since time.Time, rows []usage.Row) {
	from := since.UTC().Format("2006-01-02 15:04 UTC")
	if since.Unix() <= 0 {
		from = "the beginning"
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "No usage recorded since %s.\n", from)
		return
	}
	fmt.Fprintf(w, "Usage since %s, by %s:\n\n", from, by)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tREQUESTS\tERRORS\tPROMPT\tCOMPLETION\tESTIMATED\tCOST\tAVG TTFT\tAVG TIME\n", strings.ToUpper(by))
	var total usage.Row
	var estimated float64
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.4f\t%s\t%s\n", r.Key, humanize.Comma(r.Requests), humanize.Comma(r.Errors),
			humanize.Comma(r.PromptTokens), humanize.Comma(r.CompletionTokens), shareText(r.EstimatedShare), r.Cost,
			durationText(r.AvgTTFT), durationText(r.AvgDuration))
		total.Requests += r.Requests
		total.Errors += r.Errors
		total.PromptTokens += r.PromptTokens
		total.CompletionTokens += r.CompletionTokens
		total.Cost += r.Cost
		estimated += r.EstimatedShare * float64(r.PromptTokens+r.CompletionTokens)
	}
	if n := total.PromptTokens + total.CompletionTokens; n > 0 {
		total.EstimatedShare = estimated / float64(n)
	}
	if len(rows) > 1 {
		fmt.Fprintf(tw, "TOTAL\t%s\t%s\t%s\t%s\t%s\t%.4f\n", humanize.Comma(total.Requests), humanize.Comma(total.Errors),
			humanize.Comma(total.PromptTokens), humanize.Comma(total.CompletionTokens), shareText(total.EstimatedShare), total.Cost)
	}
	_ = tw.Flush()
}

func shareText(f float64) string {
	switch {
	case f <= 0:
		return "-"
	case f < 0.005:
		return "<1%"
	default:
		return fmt.Sprintf("%.0f%%", f*100)
	}
}

func durationText(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
