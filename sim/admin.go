package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/herald-notify/herald/platform/apierr"
	"github.com/herald-notify/herald/platform/config"
)

// adminHandler serves health, the simulators' info, their records and their faults:
//
//	GET    /healthz, /readyz
//	GET    /sim/info                     addresses and credential files
//	GET    /sim/{name}/messages?to=&limit=&after=  records, oldest first (after: Seq above it only)
//	DELETE /sim/{name}/messages          forget the records (DELETE /sim/messages: all)
//	GET    /sim/{name}/faults            the faults in force
//	PUT    /sim/{name}/faults            replace them (JSON Faults)
//	DELETE /sim/{name}/faults            clear them
//	PUT    /sim/webhook/secrets/{endpoint}  the secret ({"secret": "whsec_..."}) the webhook
//	                                        receiver verifies /hooks/{endpoint} with
//	DELETE /sim/webhook/secrets/{endpoint}  forget it
//	POST   /sim/apns/keys, /sim/fcm/projects, /sim/smtp/accounts, /sim/twilio/accounts
//	                                     make a provider account (accounts.go)
//
// Errors use Herald's own shape, since this is Herald's API rather than a provider's.
func (s *Sim) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.health.Live)
	mux.HandleFunc("GET /readyz", s.health.Ready)
	mux.HandleFunc("GET /sim/info", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.info) })
	mux.HandleFunc("DELETE /sim/messages", func(w http.ResponseWriter, _ *http.Request) {
		for _, sim := range s.sims {
			sim.records.Clear()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /sim/{name}/messages", s.withSim(func(w http.ResponseWriter, r *http.Request, sim simulator) {
		limit := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				apierr.Write(w, 400, "invalid_argument", "limit must be a non-negative integer", "limit")
				return
			}
			limit = n
		}
		var after uint64
		if v := r.URL.Query().Get("after"); v != "" {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				apierr.Write(w, 400, "invalid_argument", "after must be a non-negative integer (a record's seq)", "after")
				return
			}
			after = n
		}
		recs := sim.records.QueryAfter(r.URL.Query().Get("to"), after, limit)
		writeJSON(w, 200, map[string]any{"count": len(recs), "messages": recs})
	}))
	mux.HandleFunc("DELETE /sim/{name}/messages", s.withSim(func(w http.ResponseWriter, _ *http.Request, sim simulator) {
		sim.records.Clear()
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /sim/{name}/faults", s.withSim(func(w http.ResponseWriter, _ *http.Request, sim simulator) {
		writeJSON(w, 200, sim.faults.Get())
	}))
	mux.HandleFunc("PUT /sim/{name}/faults", s.withSim(func(w http.ResponseWriter, r *http.Request, sim simulator) {
		var f Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
		dec.DisallowUnknownFields() // a misspelt fault must not silently do nothing
		if err := dec.Decode(&f); err != nil {
			apierr.Write(w, 400, "invalid_argument", "faults: "+err.Error(), "")
			return
		}
		if err := f.Validate(); err != nil {
			field := ""
			if ke, ok := err.(*config.KeyError); ok {
				field = ke.Key
			}
			apierr.Write(w, 400, "invalid_argument", err.Error(), field)
			return
		}
		sim.faults.Set(f)
		s.log.Info("faults set", "sim", r.PathValue("name"), "faults", compactJSON(f))
		writeJSON(w, 200, sim.faults.Get())
	}))
	mux.HandleFunc("PUT /sim/webhook/secrets/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		secret, err := decodeWebhookSecret(r.Body)
		if err != nil {
			apierr.Write(w, 400, "invalid_argument", "secret: "+err.Error(), "secret")
			return
		}
		_ = s.hook.setSecret(r.PathValue("endpoint"), secret)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /sim/webhook/secrets/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		_ = s.hook.setSecret(r.PathValue("endpoint"), "")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /sim/apns/keys", s.adminCreateAPNsKey)
	mux.HandleFunc("POST /sim/fcm/projects", s.adminCreateFCMProject)
	mux.HandleFunc("POST /sim/smtp/accounts", s.adminCreateSMTPAccount)
	mux.HandleFunc("POST /sim/twilio/accounts", s.adminCreateTwilioAccount)
	mux.HandleFunc("DELETE /sim/{name}/faults", s.withSim(func(w http.ResponseWriter, r *http.Request, sim simulator) {
		sim.faults.Set(Faults{})
		s.log.Info("faults cleared", "sim", r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	}))
	return mux
}

func (s *Sim) withSim(h func(http.ResponseWriter, *http.Request, simulator)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sim, ok := s.sims[r.PathValue("name")]
		if !ok {
			apierr.Write(w, 404, "not_found", "no simulator "+strconv.Quote(r.PathValue("name"))+" (apns, fcm, smtp, sms or webhook)", "name")
			return
		}
		h(w, r, sim)
	}
}

func compactJSON(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return string(bytes.TrimSpace(b.Bytes()))
}
