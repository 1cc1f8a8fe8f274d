// Package web is the server's read-only web page for county and township
// staff (fieldsyncd serve --http): the indicators of the staff member's area
// by township or village, as server-rendered HTML with inline SVG bars (no
// JavaScript, one small style sheet, usable on an old browser and a small
// screen), a drill-down county → township → village → the list of units
// behind each figure (names and masked ID numbers, never a clear one), the
// 日通报 of overdue problems, the devices not synced for three days, and CSV
// and XLSX downloads of what a page shows. Labels are Chinese, or English
// with ?lang=en.
//
// The routes, all GET and for a signed-in member of an area containing CODE
// (else 403): /area/CODE (the figures), /area/CODE/csv and /xlsx (them, to
// download), /area/CODE/list/KEY (the units behind KEY's figure),
// /area/CODE/list/KEY/csv and /xlsx, /area/CODE/overdue (日通报) and
// /area/CODE/devices.
//
// Staff sign in with a name and password made by fieldsync admin user add
// (server.Server.SignIn), never with the admin token. A session is a random
// 32-byte id in an HttpOnly, SameSite=Strict cookie (Secure, and named with
// the __Host- prefix, over TLS); the handler keeps the sessions in memory (a
// restart signs everyone out), ends one after IdleTimeout without a request
// or MaxAge after sign-in, and checks at every request that the member's
// credential still exists, so removing it ends their sessions at once. The
// two POSTs (sign-in, sign-out) are refused when the browser says they come
// from another origin, and sign-out carries the session's CSRF token. Every
// page is read-only.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fieldsync/fieldsync/server"
)

// Defaults for Config.
const (
	DefaultIdleTimeout = 8 * time.Hour
	DefaultMaxAge      = 24 * time.Hour
)

// maxSessions bounds the sessions held at once; sign-ins beyond it are
// refused until some expire.
const maxSessions = 10000

// maxForm bounds a POSTed form, in bytes.
const maxForm = 8 << 10

// Config configures New. Server is required; the zero value of every other
// field is a default.
type Config struct {
	// Server is the server whose staff sign in and whose indicators the
	// pages show.
	Server *server.Server
	// Secure says the handler is served over TLS: the session cookie is then
	// Secure and named with the __Host- prefix.
	Secure bool
	// IdleTimeout ends a session after this long without a request;
	// MaxAge ends it this long after sign-in.
	IdleTimeout, MaxAge time.Duration
	// Logger receives sign-ins, refusals and internal errors (never
	// passwords or session ids); nil discards them.
	Logger *slog.Logger
	// Now is the clock of the sessions; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Handler serves the web page. It is safe for concurrent use and starts no
// goroutines.
type Handler struct {
	cfg   Config
	mux   *http.ServeMux
	pages *template.Template

	mu       sync.Mutex
	sessions map[[32]byte]*session // by the SHA-256 of the cookie's id
}

// session is a signed-in staff member's session.
type session struct {
	name, staffID    string
	csrf             string
	created, touched time.Time
}

//go:embed pages.html
var pageFiles embed.FS

// New returns the handler of the web page for cfg.Server.
func New(cfg Config) *Handler {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:      cfg,
		mux:      http.NewServeMux(),
		pages:    template.Must(template.ParseFS(pageFiles, "pages.html")),
		sessions: make(map[[32]byte]*session),
	}
	h.mux.HandleFunc("GET /signin", h.signInPage)
	h.mux.HandleFunc("POST /signin", h.signIn)
	h.mux.HandleFunc("POST /signout", h.signOut)
	h.mux.HandleFunc("GET /{$}", h.authed(h.home))
	h.mux.HandleFunc("GET /area/{code}", h.authed(h.areaPage))
	h.mux.HandleFunc("GET /area/{code}/csv", h.authed(h.areaFile(csvFile)))
	h.mux.HandleFunc("GET /area/{code}/xlsx", h.authed(h.areaFile(xlsxFile)))
	h.mux.HandleFunc("GET /area/{code}/list/{key}", h.authed(h.listPage))
	h.mux.HandleFunc("GET /area/{code}/list/{key}/csv", h.authed(h.listFile(csvFile)))
	h.mux.HandleFunc("GET /area/{code}/list/{key}/xlsx", h.authed(h.listFile(xlsxFile)))
	h.mux.HandleFunc("GET /area/{code}/overdue", h.authed(h.overduePage))
	h.mux.HandleFunc("GET /area/{code}/devices", h.authed(h.devicesPage))
	return h
}

// ServeHTTP sets the headers every answer carries and serves r.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// cookieName is the session cookie's name.
func (h *Handler) cookieName() string {
	if h.cfg.Secure {
		return "__Host-fieldsync_session"
	}
	return "fieldsync_session"
}

func sessionKey(id string) [32]byte { return sha256.Sum256([]byte(id)) }

// randomToken returns n random bytes in URL-safe base64.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// newSession starts a session for m and returns its id, or "" when too many
// sessions are held.
func (h *Handler) newSession(m server.Staff) string {
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, s := range h.sessions {
		if h.expired(s, now) {
			delete(h.sessions, k)
		}
	}
	if len(h.sessions) >= maxSessions {
		return ""
	}
	id := randomToken(32)
	h.sessions[sessionKey(id)] = &session{name: m.Name, staffID: m.ID, csrf: randomToken(32), created: now, touched: now}
	return id
}

func (h *Handler) expired(s *session, now time.Time) bool {
	return now.Sub(s.touched) >= h.cfg.IdleTimeout || now.Sub(s.created) >= h.cfg.MaxAge
}

// current returns the live session of r's cookie, touched now, and its key.
func (h *Handler) current(r *http.Request) (session, [32]byte, bool) {
	c, err := r.Cookie(h.cookieName())
	if err != nil || c.Value == "" {
		return session{}, [32]byte{}, false
	}
	k := sessionKey(c.Value)
	now := h.cfg.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sessions[k]
	if !ok {
		return session{}, k, false
	}
	if h.expired(s, now) {
		delete(h.sessions, k)
		return session{}, k, false
	}
	s.touched = now
	return *s, k, true
}

func (h *Handler) drop(k [32]byte) {
	h.mu.Lock()
	delete(h.sessions, k)
	h.mu.Unlock()
}

// request is what an authenticated page handler gets.
type request struct {
	staff server.Staff
	sess  session
	t     *texts
}

// authed wraps a page that needs a signed-in member: without a live session,
// or when the member's credential is gone, it redirects to the sign-in page,
// which comes back to the page asked for.
func (h *Handler) authed(page func(http.ResponseWriter, *http.Request, request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t := lang(r.FormValue("lang"))
		s, k, ok := h.current(r)
		var m server.Staff
		if ok {
			var err error
			m, err = h.cfg.Server.StaffMember(r.Context(), s.name, s.staffID)
			switch {
			case errors.Is(err, server.ErrBadCredentials):
				h.drop(k)
				ok = false
			case err != nil:
				h.fail(w, r, t, err)
				return
			}
		}
		if !ok {
			http.Redirect(w, r, "/signin?"+url.Values{"lang": {t.Lang}, "next": {r.URL.RequestURI()}}.Encode(), http.StatusSeeOther)
			return
		}
		page(w, r, request{staff: m, sess: s, t: t})
	}
}

// signInPage shows the sign-in form.
func (h *Handler) signInPage(w http.ResponseWriter, r *http.Request) {
	h.render(w, http.StatusOK, "signin", signInData{pageData: titled(lang(r.FormValue("lang"))), Next: localPath(r.FormValue("next"))})
}

type signInData struct {
	pageData
	Next, Error string
}

// signIn checks the form's name and password and starts a session.
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !h.sameOrigin(r) {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	t := lang(r.PostFormValue("lang"))
	d := signInData{pageData: titled(t), Next: localPath(r.PostFormValue("next"))}
	m, err := h.cfg.Server.SignIn(r.Context(), r.PostFormValue("name"), r.PostFormValue("password"), r.RemoteAddr)
	switch {
	case errors.Is(err, server.ErrBadCredentials):
		d.Error = t.WrongPassword
		h.render(w, http.StatusUnauthorized, "signin", d)
		return
	case errors.Is(err, server.ErrRateLimited):
		d.Error = t.TooMany
		h.render(w, http.StatusTooManyRequests, "signin", d)
		return
	case err != nil:
		h.fail(w, r, t, err)
		return
	}
	id := h.newSession(m)
	if id == "" {
		d.Error = t.TooMany
		h.render(w, http.StatusServiceUnavailable, "signin", d)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: h.cookieName(), Value: id, Path: "/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(h.cfg.MaxAge / time.Second),
	})
	next := d.Next
	if next == "" {
		next = "/?lang=" + t.Lang
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session, given its CSRF token.
func (h *Handler) signOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !h.sameOrigin(r) {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	t := lang(r.PostFormValue("lang"))
	if s, k, ok := h.current(r); ok {
		if subtle.ConstantTimeCompare([]byte(s.csrf), []byte(r.PostFormValue("csrf"))) != 1 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		h.drop(k)
	}
	http.SetCookie(w, &http.Cookie{Name: h.cookieName(), Value: "", Path: "/", HttpOnly: true, Secure: h.cfg.Secure, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/signin?lang="+t.Lang, http.StatusSeeOther)
}

// sameOrigin reports whether a POST comes from this site, as far as the
// browser says (Origin, else Referer); one that says nothing passes, as an
// old browser's does, with the SameSite cookie and the CSRF token to guard
// it.
func (h *Handler) sameOrigin(r *http.Request) bool {
	scheme := "http"
	if r.TLS != nil || h.cfg.Secure {
		scheme = "https"
	}
	want := scheme + "://" + r.Host
	if o := r.Header.Get("Origin"); o != "" {
		return o == want
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		return ref == want || strings.HasPrefix(ref, want+"/")
	}
	return true
}

// localPath returns p if it is a page of this site ("/" or "/area/...", with
// a query), else "": only printable ASCII without a backslash, parsed without
// a scheme or host, so that no browser's reading of it ("/\t/evil.example"
// becomes "//evil.example") leaves the site.
func localPath(p string) string {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return ""
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" ||
		(u.Path != "/" && !strings.HasPrefix(u.Path, "/area/")) {
		return ""
	}
	return p
}

// home sends the member to their own area.
func (h *Handler) home(w http.ResponseWriter, r *http.Request, q request) {
	http.Redirect(w, r, "/area/"+q.staff.Area+"?lang="+q.t.Lang, http.StatusSeeOther)
}

type pageData struct {
	T     *texts
	Title string
}

func titled(t *texts) pageData { return pageData{T: t, Title: t.Title} }

type errorData struct {
	pageData
	Error string
}

// render executes page with d, answering status.
func (h *Handler) render(w http.ResponseWriter, status int, page string, d any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := h.pages.ExecuteTemplate(w, page, d); err != nil {
		h.cfg.Logger.Error("web page", "page", page, "err", err)
	}
}

// fail answers an error: a request the server refuses with its reason, and
// anything else as an internal error, logged.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, t *texts, err error) {
	d := errorData{pageData: titled(t)}
	switch {
	case errors.Is(err, server.ErrBadRequest):
		d.Error = err.Error()
		h.render(w, http.StatusBadRequest, "error", d)
	case errors.Is(err, context.Canceled):
	default:
		h.cfg.Logger.ErrorContext(r.Context(), "web page", "path", r.URL.Path, "err", err)
		d.Error = t.Internal
		h.render(w, http.StatusInternalServerError, "error", d)
	}
}
