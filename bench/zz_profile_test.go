package bench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/writ-dev/writ/bench"
	"github.com/writ-dev/writ/node/nodetest"
)

func TestZZProfile(t *testing.T) {
	sc := os.Getenv("PROF_SCENARIO")
	if sc == "" {
		t.Skip()
	}
	c := nodetest.New(t, nodes(), nodetest.Options{})
	var urls []string
	for _, m := range c.Members {
		urls = append(urls, "http://"+m.APIAddr)
	}
	target, _ := bench.NewTarget(urls, nodetest.AdminToken, bench.ProtoConnect, conc())
	results, err := bench.RunScenarios(context.Background(), bench.Config{
		Target: target, Scenarios: strings.Split(sc, ","),
		Load: bench.Load{Duration: 8 * time.Second, Warmup: time.Second, Concurrency: conc()},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		t.Log(r.String())
	}
}

func conc() int {
	n := 32
	if s := os.Getenv("PROF_CONC"); s != "" {
		n = 0
		for _, c := range s {
			n = n*10 + int(c-'0')
		}
	}
	return n
}

func nodes() int {
	if os.Getenv("PROF_NODES") == "1" {
		return 1
	}
	return 3
}
