// Package metricsauth guards a metrics endpoint as the API server guards its own: the API
// server reviews the client's bearer token (TokenReview) and decides whether the user it
// names may get the path (SubjectAccessReview on a non-resource URL, e.g. /metrics).
//
// controller-runtime's filters package does the same through k8s.io/apiserver, whose
// dependencies (gRPC, OpenTelemetry, CEL) would more than double the agent that runs on every
// node; this needs only the two review APIs client-go already has.
package metricsauth

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// How long a review's answer is reused, as the API server's delegating authenticator and
// authorizer do by default: a scrape every 15 s costs the API server a request a minute.
const (
	authenticatedTTL = time.Minute
	allowedTTL       = 5 * time.Minute
	deniedTTL        = 30 * time.Second
	// maxEntries bounds each cache; past it the cache starts afresh.
	maxEntries = 256
)

// Provider returns a filter provider (metricsserver.Options.FilterProvider) that asks the API
// server about every client; clk times the answers it reuses.
func Provider(clk clock.PassiveClock) func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
	return func(cfg *rest.Config, hc *http.Client) (metricsserver.Filter, error) {
		authn, err := authenticationclient.NewForConfigAndClient(cfg, hc)
		if err != nil {
			return nil, fmt.Errorf("creating the TokenReview client: %w", err)
		}
		authz, err := authorizationclient.NewForConfigAndClient(cfg, hc)
		if err != nil {
			return nil, fmt.Errorf("creating the SubjectAccessReview client: %w", err)
		}
		g := &guard{authn: authn.TokenReviews(), authz: authz.SubjectAccessReviews(), clock: clk,
			users: map[[32]byte]entry[*authenticationv1.UserInfo]{}, decisions: map[string]entry[bool]{}}
		return func(log logr.Logger, next http.Handler) (http.Handler, error) {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.serve(log, next, w, r) }), nil
		}, nil
	}
}

type entry[T any] struct {
	value   T
	expires time.Time
}

type guard struct {
	authn authenticationclient.TokenReviewInterface
	authz authorizationclient.SubjectAccessReviewInterface
	clock clock.PassiveClock

	mu        sync.Mutex
	users     map[[32]byte]entry[*authenticationv1.UserInfo] // by the token's digest; nil: not authenticated
	decisions map[string]entry[bool]                         // by user, verb and path
}

func (g *guard) serve(log logr.Logger, next http.Handler, w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		http.Error(w, http.StatusText(http.StatusUnauthorized)+": a bearer token the API server accepts is required", http.StatusUnauthorized)
		return
	}
	user, err := g.authenticate(r, token)
	if err != nil {
		log.Error(err, "Reviewing a metrics client's token")
		http.Error(w, "Authentication failed", http.StatusInternalServerError)
		return
	}
	if user == nil {
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		return
	}
	verb := strings.ToLower(r.Method)
	allowed, err := g.authorize(r, user, verb)
	if err != nil {
		log.Error(err, "Reviewing a metrics client's access", "user", user.Username)
		http.Error(w, "Authorization failed", http.StatusInternalServerError)
		return
	}
	if !allowed {
		http.Error(w, fmt.Sprintf("Forbidden: user %q may not %s %s", user.Username, verb, r.URL.Path), http.StatusForbidden)
		return
	}
	next.ServeHTTP(w, r)
}

// authenticate returns the user the API server says the token is, or nil.
func (g *guard) authenticate(r *http.Request, token string) (*authenticationv1.UserInfo, error) {
	key := sha256.Sum256([]byte(token))
	if e, ok := lookup(g, g.users, key); ok {
		return e, nil
	}
	review, err := g.authn.Create(r.Context(), &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating a TokenReview: %w", err)
	}
	var user *authenticationv1.UserInfo
	if review.Status.Authenticated {
		user = &review.Status.User
	}
	store(g, g.users, key, user, authenticatedTTL)
	return user, nil
}

// authorize returns whether the API server lets user do verb on the request's path.
func (g *guard) authorize(r *http.Request, user *authenticationv1.UserInfo, verb string) (bool, error) {
	key := user.Username + "\x00" + user.UID + "\x00" + strings.Join(user.Groups, ",") + "\x00" + verb + "\x00" + r.URL.Path
	if allowed, ok := lookup(g, g.decisions, key); ok {
		return allowed, nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	review, err := g.authz.Create(r.Context(), &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups, Extra: extra,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: r.URL.Path, Verb: verb},
	}}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("creating a SubjectAccessReview for %s: %w", user.Username, err)
	}
	ttl := deniedTTL
	if review.Status.Allowed {
		ttl = allowedTTL
	}
	store(g, g.decisions, key, review.Status.Allowed, ttl)
	return review.Status.Allowed, nil
}

func lookup[K comparable, V any](g *guard, m map[K]entry[V], k K) (V, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := m[k]
	if !ok || !g.clock.Now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func store[K comparable, V any](g *guard, m map[K]entry[V], k K, v V, ttl time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(m) >= maxEntries {
		clear(m)
	}
	m[k] = entry[V]{value: v, expires: g.clock.Now().Add(ttl)}
}
