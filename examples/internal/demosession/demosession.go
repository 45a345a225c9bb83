// Package demosession is the toy cookie sign-in the examples put in front
// of package sheenhttp: a login form picks one of a few known users, and a
// random session id in an HttpOnly cookie names them. It stands for
// whatever sign-in a real service already has; what matters to sheenhttp is
// only UserID, its Authorize.
package demosession

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
)

// Store holds the signed-in sessions of a fixed set of users.
type Store struct {
	users map[string]string // login name -> worker user id

	mu       sync.Mutex
	sessions map[string]string // session id -> login name
}

// New returns a store for users, login name -> worker user id.
func New(users map[string]string) *Store {
	return &Store{users: users, sessions: map[string]string{}}
}

// Name is the login name of r's session, "" when it has none.
func (s *Store) Name(r *http.Request) string {
	c, err := r.Cookie("session")
	if err != nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[c.Value]
}

// UserID is the worker user id of r's session: sheenhttp's Authorize for
// the proxy and the build stream.
func (s *Store) UserID(r *http.Request) (string, error) {
	name := s.Name(r)
	if name == "" {
		return "", errors.New("not signed in")
	}
	return s.users[name], nil
}

// UserOf is the worker user id of a login name, "" when unknown.
func (s *Store) UserOf(name string) string { return s.users[name] }

// Login handles POST /login: the form's user gets a new session.
func (s *Store) Login(w http.ResponseWriter, r *http.Request) {
	name := r.FormValue("user")
	if _, ok := s.users[name]; !ok {
		http.Error(w, "unknown user", http.StatusBadRequest)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.mu.Lock()
	s.sessions[id] = name
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: "session", Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Logout handles POST /logout: the session ends.
func (s *Store) Logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie("session"); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: "session", Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// Me handles GET /app/me: who is signed in, or 401.
func (s *Store) Me(w http.ResponseWriter, r *http.Request) {
	name := s.Name(r)
	if name == "" {
		WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "Sign in to continue", "code": "UNAUTHORIZED"})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]string{"name": name, "userId": s.users[name]})
}

// WriteJSON answers v as JSON that no cache keeps.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
