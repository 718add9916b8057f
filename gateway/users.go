package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/platform/wire"
)

// byBodyUser serves the routes whose body names the user ({"user_id": ...}): read and read-all.
func (s *Server) byBodyUser(c *gin.Context) {
	var ref wire.UserRef
	if !decodeBody(c, wire.MaxSmallBytes, &ref) || !valid(c, ref.Validate()) {
		return
	}
	if tu := c.GetString("token_user"); tu != "" && tu != ref.UserID {
		abort(c, http.StatusForbidden, "user_token_mismatch", "the token is for another user", "user_id")
		return
	}
	d, ok := s.routeUser(c, ref.UserID, "user_id")
	if !ok {
		return
	}
	s.forward(c, d, wire.Encode(&ref))
}

// metricRegistrationIncomplete counts registrations that did not reach every region of the
// user's jurisdiction (the home region always took it).
var metricRegistrationIncomplete = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "herald_gateway_registration_incomplete_total",
	Help: "User registrations the home region took but another region of the jurisdiction did not (it refuses the user's failed-over requests until registered).",
}, []string{"region"})

// putUser registers a user: the country (or the jurisdiction) fixes the jurisdiction and the
// home region. The home region gets the contact details; every region of the jurisdiction
// learns that the user is its resident (regions refuse anyone else's data). A field left out
// keeps its stored value.
func (s *Server) putUser(c *gin.Context) {
	user := c.Param("user_id")
	if !wire.ValidID(user) {
		abort(c, http.StatusBadRequest, wire.CodeInvalidField, "user ids must match "+wire.IDPattern+" and not be . or ..", "user_id")
		return
	}
	p := s.Policy.Current()
	if p == nil {
		unavailable(c, "no_policy", "the gateway has no residency policy loaded yet")
		return
	}
	var body wire.User
	raw, ok := readBody(c, wire.MaxSmallBytes)
	if !ok {
		return
	}
	if len(raw) > 0 && !valid(c, wire.Decode(raw, &body)) || !valid(c, body.Validate()) {
		return
	}
	country, jur, field := "", "", "country"
	if body.Country != nil {
		country = *body.Country
	}
	if body.Jurisdiction != nil {
		jur, field = *body.Jurisdiction, "jurisdiction"
	}
	if country != "" {
		j, found := p.JurisdictionOf(country)
		if !found {
			abort(c, http.StatusBadRequest, "unsupported_country", fmt.Sprintf("no jurisdiction of the residency policy covers %s, so Herald cannot store this user's data", country), "country")
			return
		}
		if jur != "" && jur != j {
			abort(c, http.StatusBadRequest, wire.CodeInvalidField, fmt.Sprintf("country %s is in %s, not %s", country, j, jur), "jurisdiction")
			return
		}
		jur = j
	}
	ctx := c.Request.Context()
	created := false
	var e directory.Entry
	if jur == "" {
		// An update of a registered user's contact details.
		cur, err := s.Directory.Lookup(ctx, appOf(c), user)
		if errors.Is(err, directory.ErrNotFound) {
			abort(c, http.StatusBadRequest, wire.CodeMissingField, "a new user needs its country (ISO 3166-1 alpha-2) or jurisdiction", field)
			return
		}
		if err != nil {
			s.Log.Error("directory lookup", "err", err)
			unavailable(c, "directory_unavailable", "the user directory cannot be read right now; retry")
			return
		}
		e = cur
	} else {
		if len(p.Regions(jur)) == 0 {
			abort(c, http.StatusBadRequest, wire.CodeInvalidField, fmt.Sprintf("jurisdiction %q is not in the residency policy (%s)", jur, strings.Join(p.Codes(), ", ")), "jurisdiction")
			return
		}
		if d := s.decide(p, directory.Entry{Jurisdiction: jur}); d.Reason == reasonRedirect {
			// Not even the registration transits here: the jurisdiction's own gateway does it.
			s.record(c, user, d)
			c.Header("Location", strings.TrimRight(d.RedirectTo, "/")+c.Request.URL.RequestURI())
			abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("%s users are served by %s", jur, d.RedirectTo), "")
			return
		}
		// The home region is the jurisdiction's first healthy region now; it stays the user's
		// home afterwards (the data is there), whatever the policy order becomes.
		home, _, err := p.Route(jur, func(r string) bool { return s.Regions.HealthyIn(r, jur) })
		if err != nil {
			unavailable(c, "region_unavailable", fmt.Sprintf("no region of %s is healthy; the user cannot be registered now", jur))
			return
		}
		e, created, err = s.Directory.Register(ctx, appOf(c), user, directory.Entry{Jurisdiction: jur, HomeRegion: home, Country: country})
		if errors.Is(err, directory.ErrOtherJurisdiction) {
			abort(c, http.StatusConflict, "jurisdiction_conflict", fmt.Sprintf("user %q is registered in %s; moving a user to %s means erasing them first (DELETE /v1/users/%s)", user, e.Jurisdiction, jur, user), field)
			return
		}
		if err != nil {
			s.Log.Error("directory register", "err", err)
			unavailable(c, "directory_unavailable", "the user directory cannot be written right now; retry")
			return
		}
	}
	d := s.decide(p, e)
	s.record(c, user, d)
	switch d.Reason {
	case reasonRedirect:
		c.Header("Location", strings.TrimRight(d.RedirectTo, "/")+c.Request.URL.RequestURI())
		abort(c, http.StatusTemporaryRedirect, "redirect_jurisdiction", fmt.Sprintf("%s users are served by %s", d.Jurisdiction, d.RedirectTo), "")
		return
	case reasonRefused:
		unavailable(c, "region_unavailable", fmt.Sprintf("no region of %s is healthy; retry", d.Jurisdiction))
		return
	}
	// The region serving the user now gets the contact details; the jurisdiction's other
	// regions get the residency alone (jurisdiction and country, no contact).
	member := wire.User{Jurisdiction: &e.Jurisdiction}
	if e.Country != "" {
		member.Country = &e.Country
	}
	full := member
	full.Email, full.Phone, full.Locale = body.Email, body.Phone, body.Locale
	var wg sync.WaitGroup
	for _, r := range p.Regions(e.Jurisdiction) {
		if r == d.Region {
			continue
		}
		if !s.Regions.HealthyIn(r, e.Jurisdiction) {
			metricRegistrationIncomplete.WithLabelValues(r).Inc()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.call(context.WithoutCancel(ctx), c, r, http.MethodPut, c.Request.URL.Path, "", wire.Encode(&member))
			if err == nil {
				defer resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					raw, _ := io.ReadAll(resp.Body)
					err = fmt.Errorf("status %d: %s", resp.StatusCode, raw)
				}
			}
			if err != nil {
				metricRegistrationIncomplete.WithLabelValues(r).Inc()
				s.Log.Warn("registration not taken by a region of the jurisdiction", "region", r, "err", err, "request_id", reqID(c))
			}
		}()
	}
	resp, err := s.call(ctx, c, d.Region, http.MethodPut, c.Request.URL.Path, "", wire.Encode(&full))
	wg.Wait()
	if err != nil {
		s.regionFailed(c, d.Region, err)
		return
	}
	defer resp.Body.Close()
	raw, _ = io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		c.Data(resp.StatusCode, "application/json", raw)
		return
	}
	out := map[string]any{}
	_ = json.Unmarshal(raw, &out)
	addPlace(out, e)
	status := resp.StatusCode
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, out)
}

func addPlace(out map[string]any, e directory.Entry) {
	out["jurisdiction"] = e.Jurisdiction
	out["home_region"] = e.HomeRegion
	if e.Country != "" {
		out["country"] = e.Country
	}
}

// getUser answers the user's registration, with the contact details from the home region.
func (s *Server) getUser(c *gin.Context) {
	user := c.Param("user_id")
	d, ok := s.routeUser(c, user, "user_id")
	if !ok {
		return
	}
	e, err := s.Directory.Lookup(c.Request.Context(), appOf(c), user)
	if err != nil {
		unavailable(c, "directory_unavailable", "the user directory cannot be read right now; retry")
		return
	}
	resp, err := s.call(c.Request.Context(), c, d.Region, http.MethodGet, c.Request.URL.Path, "", nil)
	if err != nil {
		s.regionFailed(c, d.Region, err)
		return
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	switch resp.StatusCode {
	case http.StatusOK:
		_ = json.Unmarshal(raw, &out)
	case http.StatusNotFound:
		// Registered, no contact details stored (or they are in the home region while this
		// answer came from a failover region).
		out["user_id"] = user
	default:
		c.Data(resp.StatusCode, "application/json", raw)
		return
	}
	addPlace(out, e)
	out["served_by"] = d.Region
	c.JSON(http.StatusOK, out)
}

// eraseUser starts the erasure of the user in every region of the jurisdiction (after a
// failover, data may be in a region other than home), then forgets the user. All of them must
// take it: an erasure that skipped a region would be a false promise.
func (s *Server) eraseUser(c *gin.Context) {
	user := c.Param("user_id")
	d, ok := s.routeUser(c, user, "user_id")
	if !ok {
		return
	}
	p := s.Policy.Current()
	regions := p.Regions(d.Jurisdiction)
	for _, r := range regions {
		if !s.Regions.HealthyIn(r, d.Jurisdiction) {
			unavailable(c, "region_unavailable", fmt.Sprintf("region %s of %s is not healthy; an erasure must reach every region of the jurisdiction, retry", r, d.Jurisdiction))
			return
		}
	}
	type part struct {
		Region string         `json:"region"`
		Body   map[string]any `json:"erasure"`
	}
	parts := make([]part, len(regions))
	errs := make([]error, len(regions))
	var wg sync.WaitGroup
	for i, r := range regions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.call(c.Request.Context(), c, r, http.MethodDelete, c.Request.URL.Path, "", nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 2 {
				errs[i] = fmt.Errorf("%s answered %d: %s", r, resp.StatusCode, raw)
				return
			}
			parts[i] = part{Region: r, Body: map[string]any{}}
			_ = json.Unmarshal(raw, &parts[i].Body)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		s.Log.Warn("erasure not accepted everywhere", "err", err, "request_id", reqID(c))
		unavailable(c, "region_unavailable", "the erasure was not accepted by every region of the jurisdiction; retry (erasure is idempotent)")
		return
	}
	if err := s.Directory.Remove(c.Request.Context(), appOf(c), user); err != nil {
		s.Log.Error("removing an erased user from the directory", "err", err)
		unavailable(c, "directory_unavailable", "the erasure started but the directory could not be updated; retry")
		return
	}
	out := map[string]any{"user_id": user, "jurisdiction": d.Jurisdiction, "parts": parts}
	for _, pt := range parts {
		if pt.Region == d.Home {
			for k, v := range pt.Body {
				out[k] = v
			}
		}
	}
	c.JSON(http.StatusAccepted, out)
}

// getErasure finds an erasure by id in whichever region holds it (ids are random, no user
// data is sent anywhere by asking).
func (s *Server) getErasure(c *gin.Context) {
	s.firstFound(c, c.Request.URL.Path, "")
}
