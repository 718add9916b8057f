package gateway

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/herald-notify/herald/gateway/directory"
	"github.com/herald-notify/herald/gateway/regionset"
	"github.com/herald-notify/herald/platform/discovery"
	"github.com/herald-notify/herald/residency"
)

type fixedRegions []discovery.Instance

func (f fixedRegions) Instances(context.Context, string) ([]discovery.Instance, error) { return f, nil }

const routePolicy = `version: 7
jurisdictions:
  EU:
    regions: [eu-west-1, eu-central-1]
    countries: [DE]
    allow_transit: false
    gateway_url: https://eu.example
  US:
    regions: [us-east-1]
    countries: [US]
    allow_transit: true
    gateway_url: https://us.example
  IN:
    regions: [in-south-1]
    countries: [IN]
    allow_transit: false
    gateway_url: https://in.example
`

func TestDecideKeepsEveryUserInsideTheJurisdiction(t *testing.T) {
	p, err := residency.Parse([]byte(routePolicy))
	if err != nil {
		t.Fatal(err)
	}
	inst := func(region, jurisdiction string) discovery.Instance {
		return discovery.Instance{Address: region + ":1", Meta: map[string]string{"region": region, "jurisdiction": jurisdiction, "roles": "api"}}
	}
	eu := directory.Entry{Jurisdiction: "EU", HomeRegion: "eu-west-1"}
	euSecond := directory.Entry{Jurisdiction: "EU", HomeRegion: "eu-central-1"}
	us := directory.Entry{Jurisdiction: "US", HomeRegion: "us-east-1"}
	in := directory.Entry{Jurisdiction: "IN", HomeRegion: "in-south-1"}
	cases := []struct {
		name       string
		gatewayJ   string
		up         fixedRegions
		user       directory.Entry
		wantRegion string
		wantReason string
	}{
		{"home healthy", "EU", fixedRegions{inst("eu-west-1", "EU"), inst("eu-central-1", "EU"), inst("us-east-1", "US")}, eu, "eu-west-1", "home"},
		{"home down fails over in policy order", "EU", fixedRegions{inst("eu-central-1", "EU"), inst("us-east-1", "US")}, eu, "eu-central-1", "failover-from-eu-west-1"},
		{"a home that is second in the policy stays home", "EU", fixedRegions{inst("eu-west-1", "EU"), inst("eu-central-1", "EU")}, euSecond, "eu-central-1", "home"},
		{"whole jurisdiction down is refused, never another jurisdiction", "EU", fixedRegions{inst("us-east-1", "US")}, eu, "", "refused"},
		{"a region claiming another jurisdiction is not used", "EU", fixedRegions{inst("eu-central-1", "US")}, eu, "", "refused"},
		{"transit allowed is served here", "EU", fixedRegions{inst("us-east-1", "US")}, us, "us-east-1", "home"},
		{"no transit is redirected to its own gateway", "EU", fixedRegions{inst("in-south-1", "IN")}, in, "", "redirect"},
		{"no transit, at its own gateway, is served", "IN", fixedRegions{inst("in-south-1", "IN")}, in, "in-south-1", "home"},
		{"no transit, EU user at a US gateway", "US", fixedRegions{inst("eu-west-1", "EU")}, eu, "", "redirect"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set := regionset.New(c.up, false, time.Second, time.Second, nil)
			set.Refresh(context.Background())
			s := &Server{Jurisdiction: c.gatewayJ, PublicURL: "https://" + c.gatewayJ + ".gateway.example", Regions: set}
			d := s.decide(p, c.user)
			if d.Region != c.wantRegion || d.Reason != c.wantReason {
				t.Fatalf("got %q %q, want %q %q", d.Region, d.Reason, c.wantRegion, c.wantReason)
			}
			if d.PolicyVersion != 7 {
				t.Fatalf("policy version %d", d.PolicyVersion)
			}
		})
	}
}

func TestDecideServesAJurisdictionWhoseGatewayURLIsThisGateway(t *testing.T) {
	p, _ := residency.Parse([]byte(routePolicy))
	set := regionset.New(fixedRegions{{Address: "x:1", Meta: map[string]string{"region": "in-south-1", "jurisdiction": "IN"}}}, false, time.Second, time.Second, nil)
	set.Refresh(context.Background())
	s := &Server{Jurisdiction: "EU", PublicURL: "https://in.example/", Regions: set}
	if d := s.decide(p, directory.Entry{Jurisdiction: "IN", HomeRegion: "in-south-1"}); d.Reason != "home" {
		t.Fatalf("a gateway whose URL is IN's gateway_url must serve IN: %+v", d)
	}
}

func TestRegionBudgetLeavesTheAnswerTimeToComeBackBeforeTheGatewaysDeadline(t *testing.T) {
	if _, ok := regionBudget(context.Background()); ok {
		t.Fatal("a request without a deadline (the event stream) got a budget")
	}
	for _, tc := range []struct {
		left, want time.Duration
	}{
		{5 * time.Second, 4500 * time.Millisecond}, // a 500 ms margin at most
		{time.Second, 800 * time.Millisecond},      // a fifth when that is less
		{-time.Second, time.Millisecond},           // past: the region answers at once
	} {
		ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(tc.left))
		got, ok := regionBudget(ctx)
		cancel()
		if !ok || got > tc.want || got < tc.want-50*time.Millisecond {
			t.Errorf("%s left: budget %s (%v), want about %s", tc.left, got, ok, tc.want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	h := http.Header{}
	setRegionBudget(ctx, h)
	if v, err := strconv.Atoi(h.Get(timeoutHeader)); err != nil || v > 1600 || v < 1500 {
		t.Errorf("%s: %q, want about 1600", timeoutHeader, h.Get(timeoutHeader))
	}
}

func TestAnswerReserveKeepsATenthOfTheDeadlineAtMost500ms(t *testing.T) {
	for _, tc := range []struct{ timeout, want time.Duration }{
		{5 * time.Second, 500 * time.Millisecond},
		{2 * time.Second, 200 * time.Millisecond},
		{time.Minute, 500 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
	} {
		if got := answerReserve(tc.timeout); got != tc.want {
			t.Errorf("answerReserve(%s) = %s, want %s", tc.timeout, got, tc.want)
		}
	}
}
