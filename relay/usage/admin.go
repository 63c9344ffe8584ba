package usage

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/hearthlab/hearth/internal/apierror"
)

// AdminHandler answers GET ?by=day|token|channel|model&since=7d with the summary as JSON:
// {"by": ..., "since": RFC 3339, "rows": [Row...]}.
func (u *Log) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			adminError(w, http.StatusMethodNotAllowed, "use GET ?by=day|token|channel|model&since=7d")
			return
		}
		q := r.URL.Query()
		by := q.Get("by")
		if by == "" {
			by = "day"
		}
		since, err := ParseSince(q.Get("since"), u.now())
		if err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		rows, err := u.Summary(r.Context(), by, since)
		switch {
		case errors.Is(err, ErrSummaryBy):
			adminError(w, http.StatusBadRequest, "by "+strings.TrimPrefix(err.Error(), ErrSummaryBy.Error()+" "))
			return
		case err != nil:
			u.log.Warn("usage summary failed", "err", err)
			adminError(w, http.StatusInternalServerError, "reading the usage log failed; the relay's log says why")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"by": by, "since": since.UTC().Format(time.RFC3339), "rows": rows})
	})
}

// adminError and writeJSON answer as the relay's other admin routes do.
func adminError(w http.ResponseWriter, status int, msg string) {
	apierror.Write(w, apierror.OpenAI, &apierror.Error{Status: status, Code: http.StatusText(status), Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
