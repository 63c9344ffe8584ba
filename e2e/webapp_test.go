//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestWebApp is a phone (Chromium at 390×844) using the chat app on https://relay.test:
// signing in, streaming, stopping, surviving a cut, citations, an XSS attempt, a 48 KB
// markdown answer, history, the offline shell and the vendor fallback. The subtests run in
// order in one tab, as one person's session.
func TestWebApp(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	w := startAppWorld(t, s)
	ctx := w.browser(t)
	shots := screenshotDir(t)
	var uninterrupted string
	// Every URL the page asks for, to show at the end that no credential was ever in one.
	urls := &requestLog{}
	if err := chromedp.Listen(ctx, urls.add); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"the phone's token": w.token, "the admin key": relayAdminKey}

	t.Run("sign in", func(t *testing.T) {
		browse(t, ctx, chromedp.Navigate(w.origin+"/"))
		waitJS(t, ctx, "the sign-in screen", `!document.getElementById('signin').hidden && document.readyState === 'complete'`, 10*time.Second)
		time.Sleep(300 * time.Millisecond) // the service worker's install fetches are not the page's load
		n := js[float64](t, ctx, `performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).reduce((n, e) => n + e.transferSize, 0)`)
		files := js[string](t, ctx, `performance.getEntriesByType('resource').map((e) => e.name.replace(location.origin, '') + ' ' + e.transferSize).join(', ')`)
		t.Logf("first load: %.0f bytes on the wire (gzip) for the page and %s", n, files)
		if n <= 0 || n > 100<<10 {
			t.Errorf("the first load moved %.0f bytes, want more than 0 and at most 100 KB", n)
		}
		shot(t, ctx, shots, "signin.png")
		js[bool](t, ctx, fmt.Sprintf(`document.getElementById('token').value = %q, document.getElementById('signin-form').requestSubmit(), true`, w.token))
		waitJS(t, ctx, "the chat screen with home's models", `!document.getElementById('main').hidden && [...document.getElementById('model').options].some((o) => o.value === 'sim:latest')`, 10*time.Second)
		if got := js[string](t, ctx, `localStorage.getItem('hearth.token')`); got != w.token {
			t.Errorf("the token kept on the device is %q, want the one signed in with", got)
		}
		groups := js[string](t, ctx, `[...document.querySelectorAll('#model optgroup')].map((g) => g.label + ':' + [...g.children].map((o) => o.value).join('|')).join(' ')`)
		t.Logf("model picker: %s", groups)
		for _, want := range []string{"Home:", "Collections:rag:docs", "Vendors:vendor-chat"} {
			if !strings.Contains(groups, want) {
				t.Errorf("model picker %q has no %q", groups, want)
			}
		}
	})

	t.Run("tokens arrive one by one", func(t *testing.T) {
		pick(t, ctx, "sim:latest")
		n := send(t, ctx, "hello")
		var lengths []int
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(15 * time.Millisecond) {
			l := int(js[float64](t, ctx, `(document.querySelectorAll('.msg.assistant .body')[`+fmt.Sprint(n)+`]?.textContent || '').length`))
			if len(lengths) == 0 || l != lengths[len(lengths)-1] {
				lengths = append(lengths, l)
			}
			if answerDone(t, ctx, n) {
				break
			}
		}
		uninterrupted = answerText(t, ctx, n)
		t.Logf("the answer grew through %d lengths: %v", len(lengths), lengths)
		if len(lengths) < 8 {
			t.Errorf("the answer showed %d distinct lengths while streaming, want at least 8: tokens came in a lump", len(lengths))
		}
		if want := strings.TrimSpace(simAnswer()); uninterrupted != want {
			t.Errorf("answer %q, want %q", uninterrupted, want)
		}
		if got := served(t, ctx, n); !strings.HasPrefix(got, "answered by sim") {
			t.Errorf("served label %q, want it to name the model", got)
		}
	})

	t.Run("stop cancels upstream", func(t *testing.T) {
		before := w.up.canceled.Load()
		n := send(t, ctx, "tell me more")
		waitJS(t, ctx, "a few tokens", fmt.Sprintf(`(document.querySelectorAll('.msg.assistant .body')[%d]?.textContent || '').length > 20`, n), 10*time.Second)
		js[bool](t, ctx, `document.getElementById('stop').click(), true`)
		waitJS(t, ctx, "the stopped answer", fmt.Sprintf(`(document.querySelectorAll('.msg.assistant .served')[%d]?.textContent || '').includes('stopped')`, n), 10*time.Second)
		for deadline := time.Now().Add(5 * time.Second); w.up.canceled.Load() == before && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		}
		if got := w.up.canceled.Load() - before; got != 1 {
			t.Errorf("home's Ollama saw %d cancelled answers after stop, want 1", got)
		}
		if l := len(answerText(t, ctx, n)); l >= len(uninterrupted) {
			t.Errorf("the stopped answer has %d bytes, the whole one %d: it was not stopped", l, len(uninterrupted))
		}
	})

	t.Run("reconnect after a cut at a third", func(t *testing.T) {
		calls := w.up.calls.Load()
		n := send(t, ctx, "once more")
		waitJS(t, ctx, "a third of the answer", fmt.Sprintf(`(document.querySelectorAll('.msg.assistant .body')[%d]?.textContent || '').length >= %d`, n, len(uninterrupted)/3), 10*time.Second)
		cut := w.hop.cut()
		at := len(answerText(t, ctx, n))
		t.Logf("cut %d connections with %d of %d bytes shown", cut, at, len(uninterrupted))
		waitDone(t, ctx, n, 30*time.Second)
		if got := answerText(t, ctx, n); got != uninterrupted {
			t.Errorf("after the cut the app ended with %q, an uninterrupted run with %q", got, uninterrupted)
		}
		if cut == 0 {
			t.Errorf("there was no connection to cut")
		}
		if got := w.up.calls.Load() - calls; got != 1 {
			t.Errorf("home's Ollama was asked %d times, want 1: the reconnect must not start the answer again", got)
		}
	})

	t.Run("reload mid-answer resumes", func(t *testing.T) {
		// The phone killed the app in the background: the answer went on at the server, and
		// the app opened again picks it up from what it had saved.
		calls := w.up.calls.Load()
		n := send(t, ctx, "and after a reload?")
		waitJS(t, ctx, "a third of the answer", fmt.Sprintf(`(document.querySelectorAll('.msg.assistant .body')[%d]?.textContent || '').length >= %d`, n, len(uninterrupted)/3), 10*time.Second)
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the app again", `!document.getElementById('main').hidden`, 10*time.Second)
		waitDone(t, ctx, n, 30*time.Second)
		if got := answerText(t, ctx, n); got != uninterrupted {
			t.Errorf("after the reload the app ended with %q, an uninterrupted run with %q", got, uninterrupted)
		}
		if got := w.up.calls.Load() - calls; got != 1 {
			t.Errorf("home's Ollama was asked %d times, want 1", got)
		}
	})

	t.Run("reconnect keeps trying with backoff", func(t *testing.T) {
		// The schedule the app reconnects by, from the page's own module: short waits at
		// first, growing, and together past two minutes (waiting them out would take as long).
		sched := js[[]float64](t, ctx, `(async () => [...(await import('/app/stream.js')).backoff()])()`)
		var total float64
		for i, d := range sched {
			total += d
			if i > 0 && d < sched[i-1] {
				t.Errorf("wait %d of the backoff is %.0f ms, shorter than the one before (%.0f ms)", i, d, sched[i-1])
			}
		}
		t.Logf("backoff: %d reconnects over %.0f s of waits: %v ms", len(sched), total/1000, sched)
		if len(sched) < 3 || sched[0] > 1000 || slices.Max(sched) > 10000 || total < 120000 {
			t.Errorf("backoff %v: want a first wait under 1 s, none over 10 s, and waits adding up to at least two minutes", sched)
		}
		// The network drops at a third of an answer and refuses connections until the app has
		// asked three times. The app's attempts are the browser's requests for the events (its
		// DevTools network log); the hop shows each met a refused connection (Chrome opens one
		// to three sockets per request, so connections are not counted as attempts).
		calls := w.up.calls.Load()
		n := send(t, ctx, "and through a bad network?")
		waitJS(t, ctx, "a third of the answer", fmt.Sprintf(`(document.querySelectorAll('.msg.assistant .body')[%d]?.textContent || '').length >= %d`, n, len(uninterrupted)/3), 10*time.Second)
		const failures = 3
		from := len(urls.all())
		w.hop.setDown(true)
		for deadline := time.Now().Add(15 * time.Second); len(urls.sentAt(from, "/events")) < failures; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the app asked %d times in 15 s after the network dropped, want %d", len(urls.sentAt(from, "/events")), failures)
			}
		}
		time.Sleep(100 * time.Millisecond) // the last attempt's connections
		w.hop.setDown(false)
		at, refused := urls.sentAt(from, "/events"), w.hop.refusals()
		var gaps []time.Duration
		for i := 1; i < len(at); i++ {
			gaps = append(gaps, at[i].Sub(at[i-1]).Round(time.Millisecond))
		}
		t.Logf("the app asked for the events %d times while the network was down, %v apart; the hop refused %d connections", len(at), gaps, len(refused))
		if len(at) != failures || len(refused) < failures {
			t.Errorf("%d attempts while down and %d connections refused, want %d attempts, each refused", len(at), len(refused), failures)
		}
		// (The gaps are logged, not compared: that the waits grow is the schedule's check above;
		// a busy machine can stretch any one of them.)
		// The network is back: the phone says so (the app reconnects at once, not after its 2 s wait).
		js[bool](t, ctx, `dispatchEvent(new Event('online')), true`)
		waitDone(t, ctx, n, 30*time.Second)
		if got := answerText(t, ctx, n); got != uninterrupted {
			t.Errorf("after %d refused reconnects the app ended with %q, an uninterrupted run with %q", failures, got, uninterrupted)
		}
		if got := w.up.calls.Load() - calls; got != 1 {
			t.Errorf("home's Ollama was asked %d times, want 1", got)
		}
		if js[bool](t, ctx, `!document.getElementById('net').hidden`) {
			t.Errorf("the reconnecting banner still shows after the answer came")
		}
	})

	t.Run("rag answer with citations", func(t *testing.T) {
		js[bool](t, ctx, `document.getElementById('new-chat').click(), true`)
		pick(t, ctx, "rag:docs")
		n := send(t, ctx, "how long is the warranty?")
		waitDone(t, ctx, n, 10*time.Second)
		cites := js[[]string](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('.msg.assistant')[%d].querySelectorAll('.sources a.cite')].map((a) => a.textContent)`, n))
		if len(cites) != 2 || cites[0] != "[1] manuals/dishwasher.pdf p. 1" || cites[1] != "[2] notes/filters.md" {
			t.Errorf("citations %q, want [1] manuals/dishwasher.pdf p. 1 and [2] notes/filters.md", cites)
		}
		detail := js[string](t, ctx, fmt.Sprintf(`(() => { const m = document.querySelectorAll('.msg.assistant')[%d]; m.querySelector('.sources a.cite').click(); return m.querySelector('.cite-detail')?.textContent || ''; })()`, n))
		if !strings.Contains(detail, "two years from purchase") || !strings.Contains(detail, "page 1") {
			t.Errorf("tapping citation 1 shows %q, want its file, page and text", detail)
		}
		inline := js[string](t, ctx, fmt.Sprintf(`(() => { const m = document.querySelectorAll('.msg.assistant')[%d];
			const refs = m.querySelectorAll('.body a.cite-ref'); refs[1]?.click();
			return refs.length + ' ' + (m.querySelector('.cite-detail')?.textContent || ''); })()`, n))
		if !strings.HasPrefix(inline, "2 ") || !strings.Contains(inline, "Change the filter every year.") {
			t.Errorf("inline markers and what tapping [2] opens: %q, want 2 markers and source 2", inline)
		}
		js[bool](t, ctx, fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d].querySelector('.sources a.cite').click(), true`, n))
		shot(t, ctx, shots, "citations.png")
	})

	t.Run("regenerate and edit", func(t *testing.T) {
		n := int(js[float64](t, ctx, `document.querySelectorAll('.msg.assistant').length`)) - 1
		js[bool](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('.msg.assistant')[%d].querySelectorAll('.meta button')].find((b) => b.textContent === 'Regenerate').click(), true`, n))
		waitDone(t, ctx, n, 10*time.Second)
		if got := int(js[float64](t, ctx, `document.querySelectorAll('.msg').length`)); got != 2*(n+1) {
			t.Errorf("after regenerate the chat has %d messages, want %d: the answer is replaced, not added", got, 2*(n+1))
		}
		js[bool](t, ctx, `[...document.querySelectorAll('.msg.user')].at(-1).querySelector('.meta button').click(), true`)
		if got := js[string](t, ctx, `document.getElementById('input').value + '|' + document.querySelectorAll('.msg').length`); got != fmt.Sprintf("how long is the warranty?|%d", 2*n) {
			t.Errorf("edit: composer and message count %q, want the question back in the composer and the last turn removed", got)
		}
		js[bool](t, ctx, `document.getElementById('composer').requestSubmit(), true`)
		waitDone(t, ctx, n, 10*time.Second)
		if got := int(js[float64](t, ctx, `document.querySelectorAll('.msg.assistant .sources a.cite').length`)); got != 2 {
			t.Errorf("the resent question's answer shows %d citations, want 2", got)
		}
	})

	t.Run("image for a model that takes them", func(t *testing.T) {
		if js[bool](t, ctx, `!document.getElementById('attach-label').hidden`) {
			t.Errorf("the image button shows for rag:docs, which takes no images")
		}
		pick(t, ctx, "llava:latest")
		waitJS(t, ctx, "the image button for llava", `!document.getElementById('attach-label').hidden`, 2*time.Second)
		img := filepath.Join(t.TempDir(), "dot.png")
		if err := os.WriteFile(img, onePixelPNG(t), 0o644); err != nil {
			t.Fatal(err)
		}
		browse(t, ctx, chromedp.SetUploadFiles(chromedp.CSS("#attach"), []string{img}))
		waitJS(t, ctx, "the attached image's preview", `document.querySelectorAll('#attachments img').length === 1`, 5*time.Second)
		n := send(t, ctx, "what is in this picture?")
		waitDone(t, ctx, n, 10*time.Second)
		if body := w.up.lastBody(); !strings.Contains(body, `"image_url":{"url":"data:image/png;base64,`) || !strings.Contains(body, "what is in this picture?") {
			t.Errorf("home's Ollama got %.300s, want the question with the image as an image_url part", body)
		}
		if got := int(js[float64](t, ctx, `[...document.querySelectorAll('.msg.user')].at(-1).querySelectorAll('img').length`)); got != 1 {
			t.Errorf("the sent message shows %d images, want 1", got)
		}
	})

	t.Run("xss in an answer is inert", func(t *testing.T) {
		pick(t, ctx, "sim:latest")
		n := send(t, ctx, "script:xss please")
		waitDone(t, ctx, n, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
		got := js[string](t, ctx, fmt.Sprintf(`(() => { const b = document.querySelectorAll('.msg.assistant .body')[%d];
			const bad = [...b.querySelectorAll('script, iframe, object, embed, [onerror], [onclick], [onload], a[href^="javascript"]')].map((e) => e.outerHTML);
			return [String(window.__xss), bad.length, b.textContent.includes('end of traps'), ...bad].join(' '); })()`, n))
		if got != "undefined 0 true" {
			t.Errorf("after the XSS answer: window.__xss, dangerous nodes, text shown = %q, want \"undefined 0 true\"", got)
		}
	})

	t.Run("48 KB markdown answer", func(t *testing.T) {
		js[bool](t, ctx, `hearthStats.updates = [], true`)
		n := send(t, ctx, "script:long")
		// Reading back while tokens arrive: the view stays where the reader put it.
		waitJS(t, ctx, "a long part of the answer", fmt.Sprintf(`document.querySelectorAll('.msg.assistant .body')[%d].textContent.length > 6000`, n), 20*time.Second)
		js[bool](t, ctx, `document.getElementById('log').scrollTop = 200, true`)
		time.Sleep(400 * time.Millisecond)
		if got := js[string](t, ctx, fmt.Sprintf(`document.getElementById('log').scrollTop + ' ' + !!document.querySelectorAll('.msg.assistant')[%d].querySelector('.body.cursor')`, n)); got != "200 true" {
			t.Errorf("scroll position and still streaming after scrolling up = %q, want \"200 true\": the view jumped", got)
		}
		waitDone(t, ctx, n, 60*time.Second)
		st := js[map[string]float64](t, ctx, `(() => { const u = hearthStats.updates.slice().sort((a, b) => a - b);
			return { n: u.length, max: u.at(-1), p50: u[u.length >> 1], p95: u[Math.floor(u.length * 0.95)] }; })()`)
		t.Logf("streamed 48 KB answer: %.0f markdown updates, p50 %.2f ms, p95 %.2f ms, max %.2f ms", st["n"], st["p50"], st["p95"], st["max"])
		bench := js[map[string]float64](t, ctx, fmt.Sprintf(`(async () => {
			const { Renderer } = await import('/app/md.js');
			const src = document.querySelectorAll('.msg.assistant')[%d] && (await (await import('/app/store.js')).all())[0].messages.at(-1).content;
			const el = document.createElement('div'); document.body.append(el);
			const r = new Renderer(el); const t = [];
			for (let i = 256; i <= src.length + 255; i += 256) t.push(r.set(src.slice(0, i)));
			el.remove(); t.sort((a, b) => a - b);
			return { bytes: src.length, n: t.length, p50: t[t.length >> 1], p95: t[Math.floor(t.length * 0.95)], max: t.at(-1) }; })()`, n))
		load, _ := os.ReadFile("/proc/loadavg")
		t.Logf("renderer over the %.0f-byte answer in 256-byte steps: %.0f updates, p50 %.2f ms, p95 %.2f ms, max %.2f ms (budget 5 ms; load average %s)",
			bench["bytes"], bench["n"], bench["p50"], bench["p95"], bench["max"], strings.Fields(string(load))[0])
		if bench["bytes"] < 48<<10 {
			t.Errorf("the stored answer has %.0f bytes, want the whole 48 KB", bench["bytes"])
		}
		counts := js[string](t, ctx, fmt.Sprintf(`(() => { const b = document.querySelectorAll('.msg.assistant .body')[%d];
			return [b.querySelectorAll('pre button.copy').length > 10, b.querySelectorAll('table').length > 10, b.querySelectorAll('ul li').length > 30, b.querySelectorAll('h2').length > 50].join(' '); })()`, n))
		if counts != "true true true true" {
			t.Errorf("the long answer's code blocks with copy, tables, list items, headings present: %s", counts)
		}
		js[bool](t, ctx, fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d].querySelectorAll('pre')[3].scrollIntoView(), true`, n))
		shot(t, ctx, shots, "chat.png")
	})

	t.Run("phone details and copy", func(t *testing.T) {
		got := js[string](t, ctx, `[document.querySelector('meta[name=viewport]').content.includes('viewport-fit=cover'),
			parseFloat(getComputedStyle(document.getElementById('input')).fontSize) >= 16,
			parseFloat(getComputedStyle(document.getElementById('model')).fontSize) >= 16].join(' ')`)
		if got != "true true true" {
			t.Errorf("viewport-fit=cover, composer and picker font ≥ 16 px (no focus zoom): %s", got)
		}
		// The copy button hands the code block's text to the clipboard (the page's own
		// clipboard object is watched: headless Chromium has no focused system clipboard).
		copied := js[string](t, ctx, `(async () => {
			navigator.clipboard.writeText = (s) => { window.__copied = s; return Promise.resolve(); };
			const pre = [...document.querySelectorAll('.msg.assistant')].at(-1).querySelectorAll('pre')[2];
			const b = pre.querySelector('button.copy'); b.click();
			await new Promise((r) => setTimeout(r, 50));
			return [window.__copied === pre.querySelector('code').textContent, b.textContent, window.__copied].join('|'); })()`)
		if !strings.HasPrefix(copied, "true|Copied|func part2() int {") {
			t.Errorf("copy of the third code block: %q, want its code copied and the button saying Copied", copied)
		}
	})

	t.Run("keyboard keeps the composer in view", func(t *testing.T) {
		// Headless Chromium has no on-screen keyboard: the page's visualViewport is told that
		// one opened (its height shrinks), that the page scrolled above it, that the person
		// pinch-zoomed instead (height shrinks with scale 2, panned down), and that it closed.
		got := js[map[string]float64](t, ctx, `(async () => {
			const vv = visualViewport, H = innerHeight, log = document.getElementById('log');
			const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
			const fire = () => { vv.dispatchEvent(new Event('resize')); vv.dispatchEvent(new Event('scroll')); };
			const set = (height, offsetTop, scale) => {
				for (const [k, value] of Object.entries({ height, offsetTop, scale })) Object.defineProperty(vv, k, { value, configurable: true });
				fire();
			};
			const reset = () => { for (const k of ['height', 'offsetTop', 'scale']) delete vv[k]; fire(); };
			const bottom = () => document.getElementById('composer').getBoundingClientRect().bottom;
			const gap = () => log.scrollHeight - log.scrollTop - log.clientHeight;
			log.scrollTop = log.scrollHeight;
			await frame();
			const out = { H, before: bottom() };
			set(H - 300, 0, 1); await frame(); out.keyboard = bottom(); out.gap = gap();
			set(H - 340, 40, 1); await frame(); out.scrolled = bottom();
			reset(); await frame(); out.closed = bottom();
			set(H / 2, 100, 2); await frame(); out.zoomed = bottom();
			reset(); await frame(); out.after = bottom();
			return out; })()`)
		t.Logf("composer bottom (innerHeight %.0f): %.1f closed, %.1f with a 300 px keyboard (log %.1f px from its end), %.1f scrolled 40 px above it, %.1f closed again, %.1f pinch-zoomed ×2, %.1f after",
			got["H"], got["before"], got["keyboard"], got["gap"], got["scrolled"], got["closed"], got["zoomed"], got["after"])
		near := func(a, b float64) bool { return a > b-1.5 && a < b+1.5 }
		h := got["H"]
		if !near(got["before"], h) || !near(got["closed"], h) || !near(got["after"], h) {
			t.Errorf("with no keyboard the composer ends at %.1f, %.1f, %.1f, want the bottom of the screen (%.0f)", got["before"], got["closed"], got["after"], h)
		}
		if !near(got["keyboard"], h-300) || !near(got["scrolled"], h-300) {
			t.Errorf("with a 300 px keyboard the composer ends at %.1f (and %.1f with the page scrolled up 40 px), want right above the keyboard at %.0f", got["keyboard"], got["scrolled"], h-300)
		}
		if got["gap"] > 2 {
			t.Errorf("the chat, at its end before, is %.1f px from it with the keyboard open: the last message hides behind the keyboard", got["gap"])
		}
		if !near(got["zoomed"], h) {
			t.Errorf("pinch-zoomed ×2 the composer ends at %.1f, want it where it was (%.0f): zoom is not a keyboard", got["zoomed"], h)
		}
	})

	t.Run("long conversation stays smooth", func(t *testing.T) {
		// 200 messages on the device, saved through the app's own store, opened from the history.
		js[string](t, ctx, `(async () => { const store = await import('/app/store.js');
			const c = store.newConversation('sim:latest'); c.title = 'Long chat';
			for (let i = 0; i < 100; i++) {
				c.messages.push({ role: 'user', content: 'question ' + i });
				c.messages.push({ role: 'assistant', content: '## Answer ' + i + '\n\nA paragraph with *emphasis* and ' + String.fromCharCode(96) + 'code' + String.fromCharCode(96) + '.\n\n- one\n- two\n\n| k | v |\n| --- | --- |\n| a | ' + i + ' |\n',
					meta: { model: 'sim:latest', channel: 'home' } });
			}
			await store.save(c); return c.id; })()`)
		js[bool](t, ctx, `document.getElementById('open-history').click(), true`)
		item := `[...document.querySelectorAll('#convs li .open')].find((b) => b.firstChild.textContent === 'Long chat')`
		waitJS(t, ctx, "the long chat in the history", item, 5*time.Second)
		open := js[float64](t, ctx, `(async () => { const t0 = performance.now(); `+item+`.click();
			for (let i = 0; i < 600 && document.querySelectorAll('#log .msg').length < 200; i++) await new Promise(requestAnimationFrame);
			await new Promise(requestAnimationFrame);
			return performance.now() - t0; })()`)
		shown := js[string](t, ctx, `(() => { const log = document.getElementById('log');
			return [log.querySelectorAll('.msg').length, log.querySelectorAll('.msg.assistant table').length, log.scrollHeight - log.scrollTop - log.clientHeight < 2].join(' '); })()`)
		if shown != "200 100 true" {
			t.Fatalf("the opened long chat: messages, rendered tables, at its end = %q, want \"200 100 true\"", shown)
		}
		// While the answer streams, every frame: where the chat is scrolled and how far from its end.
		js[bool](t, ctx, `(() => { hearthStats.updates = []; const log = document.getElementById('log'), s = window.__frames = [];
			let started = false;
			const tick = () => {
				const live = !!log.querySelector('.msg.assistant:last-child .body.cursor');
				if (live) { started = true; s.push([log.scrollTop, log.scrollHeight - log.scrollTop - log.clientHeight]); }
				if ((live || !started) && s.length < 5000) requestAnimationFrame(tick);
			};
			requestAnimationFrame(tick); return true; })()`)
		t0 := time.Now()
		n := send(t, ctx, "one more at the end of a long chat")
		waitDone(t, ctx, n, 20*time.Second)
		streamed := time.Since(t0)
		frames := js[[][2]float64](t, ctx, `window.__frames`)
		st := js[map[string]float64](t, ctx, `(() => { const u = hearthStats.updates.slice().sort((a, b) => a - b);
			return { n: u.length, p50: u[u.length >> 1] || 0, max: u.at(-1) || 0 }; })()`)
		t.Logf("200 messages opened in %.0f ms; the answer at their end streamed in %v (%.0f updates, p50 %.2f ms, max %.2f ms), %d frames watched",
			open, streamed.Round(time.Millisecond), st["n"], st["p50"], st["max"], len(frames))
		if got := answerText(t, ctx, n); got != uninterrupted {
			t.Errorf("the answer at the end of the long chat is %q, want %q", got, uninterrupted)
		}
		if len(frames) < 10 {
			t.Errorf("only %d frames seen while the answer streamed: the check would prove nothing", len(frames))
		}
		for i, f := range frames {
			if f[1] > 2 || (i > 0 && f[0] < frames[i-1][0]) {
				t.Errorf("frame %d of %d: scrolled to %.0f (before %.0f), %.0f px from the end: want the view at the end, never moving back", i, len(frames), f[0], frames[max(i-1, 0)][0], f[1])
				break
			}
		}
		if got := int(js[float64](t, ctx, `document.querySelectorAll('#log .msg').length`)); got != 202 {
			t.Errorf("the long chat shows %d messages after one more turn, want 202", got)
		}
		// Leave the device as the next subtests expect it: without the long chat.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			saved := js[float64](t, ctx, `(async () => { const store = await import('/app/store.js');
				const c = (await store.all()).find((c) => c.title === 'Long chat'); return c && !c.messages.some((m) => m.pending) ? c.messages.length : 0; })()`)
			if saved == 202 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the long chat saved with %.0f finished messages, want 202", saved)
			}
		}
		js[bool](t, ctx, `(async () => { const store = await import('/app/store.js');
			await store.remove((await store.all()).find((c) => c.title === 'Long chat').id); return true; })()`)
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the app again", `!document.getElementById('main').hidden`, 10*time.Second)
	})

	t.Run("history after reload", func(t *testing.T) {
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the last chat after the reload", `!document.getElementById('main').hidden && document.querySelectorAll('.msg.assistant .sources a.cite').length === 2`, 10*time.Second)
		js[bool](t, ctx, `document.getElementById('open-history').click(), true`)
		waitJS(t, ctx, "two chats in the history", `document.querySelectorAll('#convs li').length === 2`, 5*time.Second)
		js[bool](t, ctx, `(() => { const s = document.getElementById('search'); s.value = 'warranty'; s.dispatchEvent(new Event('input')); return true; })()`)
		waitJS(t, ctx, "one chat matching 'warranty'", `document.querySelectorAll('#convs li').length === 1 && document.querySelector('#convs li').textContent.includes('how long is the warranty')`, 5*time.Second)
		shot(t, ctx, shots, "history.png")
		js[bool](t, ctx, `document.getElementById('close-history').click(), true`)
	})

	t.Run("rename, search and delete in the history", func(t *testing.T) {
		search := func(q string) {
			js[bool](t, ctx, fmt.Sprintf(`(() => { const s = document.getElementById('search'); s.value = %q; s.dispatchEvent(new Event('input')); return true; })()`, q))
		}
		js[bool](t, ctx, `document.getElementById('open-history').click(), true`)
		search("")
		waitJS(t, ctx, "two chats in the history", `document.querySelectorAll('#convs li').length === 2`, 5*time.Second)
		// The buttons of the list item whose title starts with a text.
		item := func(title string) string {
			return fmt.Sprintf(`[...document.querySelectorAll('#convs li')].find((li) => li.querySelector('.open').firstChild.textContent.startsWith(%q))`, title)
		}
		js[bool](t, ctx, `window.prompt = () => '  Warranty questions ', true`)
		js[bool](t, ctx, item("how long is the warranty")+`.querySelector('button[aria-label=Rename]').click(), true`)
		waitJS(t, ctx, "the new title in the list", item("Warranty questions")+` && !`+item("how long is the warranty"), 5*time.Second)
		// By title only ("questions" is in no message), then by an answer's text only.
		search("QUESTIONS")
		waitJS(t, ctx, "the renamed chat found by its title", `document.querySelectorAll('#convs li').length === 1 && `+item("Warranty questions"), 5*time.Second)
		search("After A Reload")
		waitJS(t, ctx, "the first chat found by a later message's text", `document.querySelectorAll('#convs li').length === 1 && `+item("hello"), 5*time.Second)
		search("no chat says this")
		waitJS(t, ctx, "nothing found", `document.querySelectorAll('#convs li').length === 0`, 5*time.Second)

		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the app again", `!document.getElementById('main').hidden`, 10*time.Second)
		js[bool](t, ctx, `document.getElementById('open-history').click(), true`)
		waitJS(t, ctx, "the new title after a reload", `document.querySelectorAll('#convs li').length === 2 && `+item("Warranty questions"), 5*time.Second)

		asked := js[string](t, ctx, `window.confirm = (q) => (window.__asked = q, true), `+item("hello")+`.querySelector('button[aria-label=Delete]').click(), window.__asked`)
		if asked != `Delete "hello"?` {
			t.Errorf("the delete asked %q, want Delete \"hello\"?", asked)
		}
		waitJS(t, ctx, "the chat gone from the list", `document.querySelectorAll('#convs li').length === 1 && !`+item("hello"), 5*time.Second)
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the app again", `!document.getElementById('main').hidden`, 10*time.Second)
		js[bool](t, ctx, `document.getElementById('open-history').click(), true`)
		waitJS(t, ctx, "one chat after a reload", `document.querySelectorAll('#convs li').length === 1 && `+item("Warranty questions"), 5*time.Second)
		if got := js[string](t, ctx, `(async () => (await (await import('/app/store.js')).all()).map((c) => c.title).join('|'))()`); got != "Warranty questions" {
			t.Errorf("the device keeps the chats %q, want only \"Warranty questions\"", got)
		}
		js[bool](t, ctx, `document.getElementById('close-history').click(), true`)
	})

	t.Run("export markdown and json", func(t *testing.T) {
		dir := t.TempDir()
		browse(t, ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir})
			return err
		}))
		download := func(button, name string) string {
			js[bool](t, ctx, `document.getElementById('open-history').click(), document.getElementById('`+button+`').click(), true`)
			p := filepath.Join(dir, name)
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
					js[bool](t, ctx, `document.getElementById('close-history').click(), true`)
					return string(b)
				}
				if time.Now().After(deadline) {
					entries, _ := os.ReadDir(dir)
					t.Fatalf("no %s downloaded within 5 s; the folder has %v", name, entries)
				}
			}
		}
		var chats []struct {
			Title, Model string
			Messages     []struct {
				Role    string
				Content json.RawMessage // a string, or parts with an image
			}
		}
		if err := json.Unmarshal([]byte(download("export-json", "hearth-chats.json")), &chats); err != nil {
			t.Fatalf("the JSON export: %v", err)
		}
		if len(chats) != 1 || chats[0].Title != "Warranty questions" || chats[0].Model == "" || len(chats[0].Messages) < 2 ||
			string(chats[0].Messages[0].Content) != `"how long is the warranty?"` || !strings.Contains(string(chats[0].Messages[1].Content), "two years") {
			t.Fatalf("the JSON export holds %.600s, want the one chat kept, titled, with its question and answer", fmt.Sprint(chats))
		}
		md := download("export-md", "Warranty questions.md")
		for _, want := range []string{"# Warranty questions\n", "Model: " + chats[0].Model + " · ", "## You\n\nhow long is the warranty?\n",
			"The warranty lasts **two years** [1]", "- source: manuals/dishwasher.pdf p. 1\n", "- source: notes/filters.md", "## You\n\nscript:xss please\n"} {
			if !strings.Contains(md, want) {
				t.Errorf("the Markdown export has no %q:\n%.2000s", want, md)
			}
		}
	})

	t.Run("service worker and offline shell", func(t *testing.T) {
		waitJS(t, ctx, "the service worker in control", `navigator.serviceWorker.controller !== null`, 10*time.Second)
		w.hop.setDown(true)
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the shell and the chat, offline", `!document.getElementById('main').hidden && document.querySelectorAll('.msg.assistant').length >= 2 && !document.getElementById('net').hidden`, 10*time.Second)
		shot(t, ctx, shots, "offline.png")
		w.hop.setDown(false)
	})

	t.Run("offline page and no API answer cached", func(t *testing.T) {
		kept := js[[]string](t, ctx, `(async () => { const out = [];
			for (const k of await caches.keys()) for (const r of await (await caches.open(k)).keys()) out.push(new URL(r.url).pathname);
			return out.sort(); })()`)
		t.Logf("the service worker keeps %v", kept)
		if !slices.Contains(kept, "/app/offline.html") || !slices.Contains(kept, "/app/app.js") {
			t.Errorf("the cache %v lacks the offline page or the app", kept)
		}
		for _, p := range kept {
			if strings.HasPrefix(p, "/app/v1/") || strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/admin/") || strings.HasPrefix(p, "/api/") {
				t.Errorf("the service worker cached an API answer: %s", p)
			}
		}
		w.hop.setDown(true)
		browse(t, ctx, chromedp.Navigate(w.origin+"/app/not-kept"))
		waitJS(t, ctx, "the offline page", `document.querySelector('h1')?.textContent.includes('hearth is offline')`, 10*time.Second)
		w.hop.setDown(false)
		browse(t, ctx, chromedp.Navigate(w.origin+"/"))
		waitJS(t, ctx, "the app again", `!document.getElementById('main').hidden && document.getElementById('net').hidden`, 10*time.Second)
	})

	t.Run("household view", func(t *testing.T) {
		js[bool](t, ctx, `document.getElementById('open-history').click(), document.getElementById('open-admin').click(), true`)
		waitJS(t, ctx, "the admin key form", `document.getElementById('admin-key')`, 5*time.Second)
		js[bool](t, ctx, fmt.Sprintf(`document.getElementById('admin-key').value = %q, document.querySelector('#admin form').requestSubmit(), true`, relayAdminKey))
		waitJS(t, ctx, "home online, channels and tokens", `(() => { const t = document.getElementById('admin').innerText;
			return t.includes('Home and tunnel') && t.includes('online') && t.includes('vendor') && t.includes('closed') && t.includes('phone'); })()`, 10*time.Second)
		// Usage is written in batches (1 s): refresh until the day chart has its bars.
		for deadline := time.Now().Add(10 * time.Second); !js[bool](t, ctx, `document.querySelectorAll('#admin svg.chart rect').length >= 3`); time.Sleep(300 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no usage charts after 10 s: %s", js[string](t, ctx, `document.getElementById('admin').innerText`))
			}
			js[bool](t, ctx, `[...document.querySelectorAll('#admin .bar button')].find((b) => b.textContent === 'Refresh').click(), true`)
			time.Sleep(300 * time.Millisecond)
		}
		where := js[string](t, ctx, `[sessionStorage.getItem('hearth.admin') !== null, localStorage.getItem('hearth.admin') === null].join(' ')`)
		if where != "true true" {
			t.Errorf("admin key in sessionStorage, not in localStorage: %s", where)
		}
		shot(t, ctx, shots, "household.png")
		js[bool](t, ctx, `(() => { const f = document.querySelector('#admin form.inline-form'); f.querySelector('input').value = 'tablet'; f.requestSubmit(); return true; })()`)
		waitJS(t, ctx, "the new token's secret, shown once", `document.querySelector('#admin .secret')?.textContent.length > 20`, 5*time.Second)
		secret := js[string](t, ctx, `document.querySelector('#admin .secret').textContent`)
		secrets["the tablet's new token"] = secret
		if code, _, _ := w.rl.get("/v1/models", "Bearer "+secret); code != 200 {
			// The relay loads new tokens every 2 s.
			time.Sleep(2500 * time.Millisecond)
			if code, body, _ := w.rl.get("/v1/models", "Bearer "+secret); code != 200 {
				t.Errorf("the token created in the household view does not work: %d %s", code, body)
			}
		}
		js[bool](t, ctx, `window.confirm = () => true, [...document.querySelectorAll('#admin .bar button')].find((b) => b.textContent === 'Refresh').click(), true`)
		waitJS(t, ctx, "the token list with tablet", `[...document.querySelectorAll('#admin tr')].some((r) => r.textContent.startsWith('tablet'))`, 5*time.Second)
		if js[bool](t, ctx, `!!document.querySelector('#admin .secret')`) {
			t.Errorf("the secret is still shown after a refresh: it must be shown once")
		}
		js[bool](t, ctx, `[...document.querySelectorAll('#admin tr')].find((r) => r.textContent.startsWith('tablet')).querySelector('button').click(), true`)
		waitJS(t, ctx, "tablet revoked", `[...document.querySelectorAll('#admin tr')].find((r) => r.textContent.startsWith('tablet'))?.textContent.includes('revoked')`, 5*time.Second)
		js[bool](t, ctx, `document.querySelector('#admin .bar button[aria-label=Close]').click(), true`)
	})

	t.Run("vendor fallback with home stopped", func(t *testing.T) {
		w.home.stop()
		w.rl.waitFor(t, "the home channel offline", 20*time.Second, func() string {
			code, body, err := w.rl.get("/admin/v1/agents", "Bearer "+relayAdminKey)
			if err != nil || code != 200 || !strings.Contains(body, `"online":false`) {
				return fmt.Sprintf("/admin/v1/agents: %d %s %v", code, body, err)
			}
			return ""
		})
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the chat screen", `!document.getElementById('main').hidden && document.getElementById('net').hidden`, 10*time.Second)
		js[bool](t, ctx, `document.getElementById('new-chat').click(), true`)
		pick(t, ctx, "sim:latest")
		n := send(t, ctx, "hello while home sleeps")
		waitDone(t, ctx, n, 20*time.Second)
		if got := served(t, ctx, n); got != "answered by vendor-chat via vendor, home is offline" {
			t.Errorf("served label %q, want \"answered by vendor-chat via vendor, home is offline\"", got)
		}
		if got := answerText(t, ctx, n); got != "The vendor answers while home is away." {
			t.Errorf("vendor answer shown as %q", got)
		}
		shot(t, ctx, shots, "vendor.png")
	})

	t.Run("dark mode", func(t *testing.T) {
		browse(t, ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
			return err
		}))
		if bg := js[string](t, ctx, `getComputedStyle(document.body).backgroundColor`); bg != "rgb(26, 18, 13)" {
			t.Errorf("background in dark mode %q, want the dark theme's rgb(26, 18, 13)", bg)
		}
		shot(t, ctx, shots, "dark.png")
	})

	t.Run("sign out", func(t *testing.T) {
		js[bool](t, ctx, `document.getElementById('open-history').click(), document.getElementById('signout').click(), true`)
		waitJS(t, ctx, "the sign-in screen", `!document.getElementById('signin').hidden && document.getElementById('main').hidden`, 5*time.Second)
		browse(t, ctx, chromedp.Reload())
		waitJS(t, ctx, "the sign-in screen after a reload", `!document.getElementById('signin').hidden && document.readyState === 'complete'`, 10*time.Second)
		if got := js[string](t, ctx, `String(localStorage.getItem('hearth.token'))`); got != "null" {
			t.Errorf("after sign-out the device still keeps a token (%d bytes)", len(got))
		}
	})

	t.Run("no credential in any URL or log", func(t *testing.T) {
		all := urls.all()
		api := 0
		for _, u := range all {
			if strings.Contains(u, "/app/v1/generations/") || strings.Contains(u, "/admin/v1/") {
				api++
			}
			for what, secret := range secrets {
				if strings.Contains(u, secret) || strings.Contains(u, url.QueryEscape(secret)) {
					t.Errorf("%s is in a URL the page asked for: %s", what, strings.ReplaceAll(u, secret, "<secret>"))
				}
			}
		}
		t.Logf("%d requests seen, %d of them to the generations and the admin API", len(all), api)
		if api == 0 || len(secrets) != 3 {
			t.Errorf("saw %d API requests and %d credentials: the check would prove nothing", api, len(secrets))
		}
		for _, p := range []*agentProc{w.rl.agentProc, w.home} {
			b, err := os.ReadFile(p.Log)
			if err != nil || len(b) == 0 {
				t.Errorf("the %s's log: %d bytes, %v", p.Role, len(b), err)
				continue
			}
			for what, secret := range secrets {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s is in the %s's log", what, p.Role)
				}
			}
		}
	})
}

// TestWebAppOnAgent opens the app on the agent in front of the real Ollama, from a trusted
// address (no sign-in), and streams one answer from tiny.
func TestWebAppOnAgent(t *testing.T) {
	s := use(t)
	s.agentOnly(t)
	ctx := (&appWorld{}).browser(t)
	browse(t, ctx, chromedp.Navigate(s.agentURL+"/"))
	waitJS(t, ctx, "the chat screen without sign-in", `!document.getElementById('main').hidden && [...document.getElementById('model').options].some((o) => o.value.startsWith('tiny'))`, 15*time.Second)
	model := js[string](t, ctx, `[...document.getElementById('model').options].find((o) => o.value.startsWith('tiny')).value`)
	pick(t, ctx, model)
	n := send(t, ctx, "hello")
	waitDone(t, ctx, n, 90*time.Second)
	text, label := answerText(t, ctx, n), served(t, ctx, n)
	t.Logf("the real Ollama's %s answered through the agent's app: %q (%s)", model, text, label)
	if errText := js[string](t, ctx, fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d].querySelector('.errmsg')?.textContent || ''`, n)); errText != "" {
		t.Errorf("the answer ended with an error: %s", errText)
	}
	if !strings.HasPrefix(label, "answered by") {
		t.Errorf("served label %q, want \"answered by …\"", label)
	}
}

// requestLog keeps the URL of every request a tab sends (chromedp.Listen's events), and when
// the browser sent it.
type requestLog struct {
	mu    sync.Mutex
	urls  []string
	times []time.Time
}

func (l *requestLog) add(ev any) {
	if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Request != nil {
		at := time.Now()
		if wall := float64(e.WallTime); wall > 0 { // seconds since the epoch
			at = time.UnixMicro(int64(wall * 1e6))
		}
		l.mu.Lock()
		l.urls = append(l.urls, e.Request.URL+e.Request.URLFragment)
		l.times = append(l.times, at)
		l.mu.Unlock()
	}
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.urls)
}

// sentAt is when the requests after the first from whose URL contains part were sent.
func (l *requestLog) sentAt(from int, part string) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var at []time.Time
	for i := from; i < len(l.urls); i++ {
		if strings.Contains(l.urls[i], part) {
			at = append(at, l.times[i])
		}
	}
	return at
}

func onePixelPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	img := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.NRGBA{0xe8, 0x62, 0x1c, 0xff})
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func browse(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// js evaluates expr in the page (awaiting a promise) and decodes its value.
func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("in the page: %s: %v", expr, err)
	}
	return v
}

func waitJS(t *testing.T, ctx context.Context, what, expr string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		if js[bool](t, ctx, "!!("+expr+")") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (%s); page shows: %s", what, limit, expr,
				js[string](t, ctx, `[...document.querySelectorAll('body > *')].map((e) => e.id + (e.hidden ? ' (hidden)' : '') + ': ' + e.innerText.slice(-300)).join('\n')`))
		}
	}
}

func pick(t *testing.T, ctx context.Context, model string) {
	t.Helper()
	js[bool](t, ctx, fmt.Sprintf(`(() => { const s = document.getElementById('model'); s.value = %q; s.dispatchEvent(new Event('change')); return s.value === %q; })()`, model, model))
}

// send submits text and returns the index of the answer it starts.
func send(t *testing.T, ctx context.Context, text string) int {
	t.Helper()
	n := int(js[float64](t, ctx, `document.querySelectorAll('.msg.assistant').length`))
	js[bool](t, ctx, fmt.Sprintf(`document.getElementById('input').value = %q, document.getElementById('composer').requestSubmit(), true`, text))
	return n
}

func answerDone(t *testing.T, ctx context.Context, n int) bool {
	return js[bool](t, ctx, fmt.Sprintf(`(() => { const m = document.querySelectorAll('.msg.assistant')[%d]; return !!m && !m.querySelector('.body.cursor') && !document.getElementById('send').hidden; })()`, n))
}

func waitDone(t *testing.T, ctx context.Context, n int, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); !answerDone(t, ctx, n); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("answer %d not finished within %v; page shows: %s", n, limit, js[string](t, ctx, `document.body.innerText.slice(-600)`))
		}
	}
}

func answerText(t *testing.T, ctx context.Context, n int) string {
	return strings.TrimSpace(js[string](t, ctx, fmt.Sprintf(`document.querySelectorAll('.msg.assistant .body')[%d]?.textContent || ''`, n)))
}

func served(t *testing.T, ctx context.Context, n int) string {
	return js[string](t, ctx, fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d].querySelector('.served')?.textContent || ''`, n))
}

// screenshotDir is the test's artifact directory (kept with go test -artifacts), or
// HEARTH_E2E_SHOTS when set.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("HEARTH_E2E_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(tctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot at 390×844: %s", p)
}
