package bench

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A small SVG line-chart writer: enough for throughput over time, latency
// percentiles, CDFs and scale curves, with no dependency and output that
// diffs cleanly in git.

// Series is one named line.
type Series struct {
	Name   string
	Points []Point
}

// Chart describes one plot.
type Chart struct {
	Title, XLabel, YLabel string
	// LogX / LogY use base-10 axes (non-positive values are dropped).
	LogX, LogY bool
	// XTickLabels, when set, labels these x values instead of numeric ticks.
	XTickLabels map[float64]string
	Series      []Series
	// Width and Height in px (default 960 × 420; the legend sits right of the plot).
	Width, Height int
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"}

const (
	mLeft, mRight, mTop, mBottom = 70.0, 230.0, 40.0, 55.0
)

// SVG renders the chart.
func (c Chart) SVG() string {
	w, h := float64(cmpInt(c.Width, 960)), float64(cmpInt(c.Height, 420))
	tx, ty := axisT(c.LogX), axisT(c.LogY)
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for _, p := range s.Points {
			x, okx := tx(p.X)
			y, oky := ty(p.Y)
			if !okx || !oky {
				continue
			}
			xmin, xmax, ymin, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Min(ymin, y), math.Max(ymax, y)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", mLeft, esc(c.Title))
	if math.IsInf(xmin, 1) {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#666">no data</text></svg>`+"\n", w/2-30, h/2)
		return b.String()
	}
	if !c.LogY && ymin > 0 {
		ymin = 0 // linear y axes start at zero so ratios read honestly
	}
	xmin, xmax = pad(xmin, xmax, c.LogX)
	ymin, ymax = pad(ymin, ymax, c.LogY)
	if !c.LogY {
		ymax += (ymax - ymin) * 0.05
	}
	pw, ph := w-mLeft-mRight, h-mTop-mBottom
	px := func(x float64) float64 { return mLeft + (x-xmin)/(xmax-xmin)*pw }
	py := func(y float64) float64 { return mTop + ph - (y-ymin)/(ymax-ymin)*ph }

	// Grid and ticks.
	for _, t := range ticks(ymin, ymax, c.LogY) {
		y := py(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", mLeft, y, mLeft+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", mLeft-6, y+4, tickLabel(t, c.LogY))
	}
	if c.XTickLabels != nil {
		for _, x := range sortedFloatKeys(c.XTickLabels) {
			label := c.XTickLabels[x]
			tv, ok := tx(x)
			if !ok || tv < xmin || tv > xmax {
				continue
			}
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", px(tv), mTop, px(tv), mTop+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(tv), mTop+ph+18, esc(label))
		}
	} else {
		for _, t := range ticks(xmin, xmax, c.LogX) {
			x := px(t)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e5e5e5"/>`+"\n", x, mTop, x, mTop+ph)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, mTop+ph+18, tickLabel(t, c.LogX))
		}
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", mLeft, mTop, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", mLeft+pw/2, h-12, esc(c.XLabel))
	fmt.Fprintf(&b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n", mTop+ph/2, mTop+ph/2, esc(c.YLabel))

	// Lines, markers and legend.
	for i, s := range c.Series {
		col := palette[i%len(palette)]
		var pts []string
		for _, p := range s.Points {
			x, okx := tx(p.X)
			y, oky := ty(p.Y)
			if okx && oky {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(y)))
			}
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, strings.Join(pts, " "))
		}
		if len(pts) <= 30 {
			for _, p := range pts {
				xy := strings.SplitN(p, ",", 2)
				fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], col)
			}
		}
		ly := mTop + 10 + float64(i)*16
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="12" height="3" fill="%s"/>`+"\n", mLeft+pw+12, ly-4, col)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", mLeft+pw+30, ly, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func cmpInt(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

func esc(s string) string { return html.EscapeString(s) }

// axisT maps a value to axis space (log10 for log axes).
func axisT(log bool) func(float64) (float64, bool) {
	if log {
		return func(v float64) (float64, bool) {
			if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return 0, false
			}
			return math.Log10(v), true
		}
	}
	return func(v float64) (float64, bool) { return v, !math.IsNaN(v) && !math.IsInf(v, 0) }
}

func pad(lo, hi float64, log bool) (float64, float64) {
	if hi > lo {
		if log {
			return math.Floor(lo), math.Ceil(hi)
		}
		return lo, hi
	}
	if log {
		return math.Floor(lo) - 0.5, math.Ceil(hi) + 0.5
	}
	if lo == 0 {
		return 0, 1
	}
	return lo - math.Abs(lo)*0.1, hi + math.Abs(hi)*0.1
}

// ticks returns tick positions in axis space.
func ticks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		for t := math.Ceil(lo); t <= hi+1e-9; t++ {
			out = append(out, t)
		}
		return out
	}
	step := niceStep((hi - lo) / 5)
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		out = append(out, t)
	}
	return out
}

func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func tickLabel(t float64, log bool) string {
	v := t
	if log {
		v = math.Pow(10, t)
	}
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func sortedFloatKeys(m map[float64]string) []float64 {
	out := make([]float64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
