package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/herald-notify/herald/gateway/apikey"
	"github.com/herald-notify/herald/platform/usertoken"
)

// userTokenRoutes are the routes a client may call with a user token instead of an API key:
// reading and marking its own user's inbox, nothing else.
var userTokenRoutes = map[string]bool{
	"GET /v1/users/:user_id/notifications":                  true,
	"GET /v1/users/:user_id/notifications/unread-count":     true,
	"GET /v1/users/:user_id/notifications/stream":           true,
	"GET /v1/users/:user_id/notifications/:notification_id": true,
	"PATCH /v1/notifications/:id/read":                      true,
	"POST /v1/notifications/read-all":                       true,
}

// tokenSecrets is what user-token checks need from the key store.
type tokenSecrets interface {
	TokenSecret(ctx context.Context, app string) ([]byte, error)
}

// secretCache remembers apps' user-token secrets for a short TTL, as keyCache does for keys: a
// rotated secret applies within that TTL.
type secretCache struct {
	next tokenSecrets
	ttl  time.Duration

	mu sync.Mutex
	m  map[string]cachedSecret
}

type cachedSecret struct {
	secret []byte
	exp    time.Time
}

func newSecretCache(next tokenSecrets, ttl time.Duration) *secretCache {
	return &secretCache{next: next, ttl: ttl, m: map[string]cachedSecret{}}
}

func (c *secretCache) TokenSecret(ctx context.Context, app string) ([]byte, error) {
	now := time.Now()
	c.mu.Lock()
	if v, ok := c.m[app]; ok && now.Before(v.exp) {
		c.mu.Unlock()
		return v.secret, nil
	}
	c.mu.Unlock()
	s, err := c.next.TokenSecret(ctx, app)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.m[app] = cachedSecret{secret: s, exp: now.Add(c.ttl)}
	c.mu.Unlock()
	return s, nil
}

// authenticateUserToken admits a client's user token on the inbox routes, for its own user only.
func (s *Server) authenticateUserToken(c *gin.Context, token string) {
	claims, err := usertoken.Peek(token)
	if err != nil {
		abort(c, http.StatusUnauthorized, "invalid_user_token", "the token is neither an API key nor a user token", "Authorization")
		return
	}
	secret, err := s.TokenSecrets.TokenSecret(c.Request.Context(), claims.App)
	if errors.Is(err, apikey.ErrNoTokenSecret) {
		abort(c, http.StatusUnauthorized, "invalid_user_token", "the token's app accepts no user tokens", "Authorization")
		return
	}
	if err != nil {
		s.Log.Error("reading a user-token secret", "err", err, "request_id", reqID(c))
		unavailable(c, "auth_unavailable", "user tokens cannot be checked right now; retry")
		return
	}
	if _, err := usertoken.Verify(secret, token, claims.App, claims.User, time.Now()); err != nil {
		code := "invalid_user_token"
		if errors.Is(err, usertoken.ErrExpired) {
			code = "user_token_expired"
		}
		abort(c, http.StatusUnauthorized, code, err.Error(), "Authorization")
		return
	}
	if !userTokenRoutes[c.Request.Method+" "+c.FullPath()] {
		abort(c, http.StatusForbidden, "forbidden_for_user_token", "a user token reads its user's inbox only; this route needs an API key", "Authorization")
		return
	}
	if u := c.Param("user_id"); u != "" && u != claims.User {
		abort(c, http.StatusForbidden, "user_token_mismatch", "the token is for another user", "user_id")
		return
	}
	c.Set("app_id", claims.App)
	c.Set("token_user", claims.User)
	c.Set("key_id", "ut:"+claims.App+":"+s.Directory.Key(claims.App, claims.User)[:32])
	c.Set("limit", s.DefaultLimit)
}
