package main

// Scoring and reporting of the FastNetMon comparison: its own section
// appended to report.md and added to report.json (key "fastnetmon"), so
// that the rest of flowbench's report stays as it is.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/flowhouse/flowhouse/flowgen"
)

func execOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// fnmScore gives each scenario each detector's verdict, and counts the
// findings no scenario explains.
func fnmScore(found []fnmDetection, start time.Time, g *flowgen.Report, spec fnmPassSpec) ([]FNMScenario, []FNMOther) {
	byDetector := map[string][]fnmDetection{}
	for i := range found {
		found[i].idx = i
		byDetector[found[i].Detector] = append(byDetector[found[i].Detector], found[i])
	}
	used := map[int]bool{}
	var out []FNMScenario
	for _, s := range fnmScenarios {
		sc := FNMScenario{Scenario: s.kind.String(), Control: s.control}
		for _, a := range s.addrs {
			sc.Addresses = append(sc.Addresses, a.String())
		}
		sc.addOffered(g, s.kind, spec)
		for _, det := range fnmDetectors {
			matched := fnmMatch(byDetector[det], s, start)
			v := verdict(det, matched, start)
			if early := fnmMatch(byDetector[det], s, time.Time{}); len(early) > 0 && early[0].At.Before(start) {
				v.BeforeAttack = fmt.Sprintf("%s at %.1f s", early[0].Kind, early[0].At.Sub(start).Seconds())
			}
			sc.Verdicts = append(sc.Verdicts, v)
			for _, m := range matched {
				used[m.idx] = true
			}
		}
		out = append(out, sc)
	}
	return out, fnmOthers(found, used, start)
}

func (sc *FNMScenario) addOffered(g *flowgen.Report, k flowgen.ScenarioKind, spec fnmPassSpec) {
	secs := spec.attack.Seconds()
	for _, r := range g.Scenarios {
		if r.Name == k.String() && secs > 0 {
			n := float64(spec.sampling)
			sc.OfferedPPS = float64(r.Counts.Packets) * n / secs
			sc.OfferedMbps = float64(r.Counts.Bytes) * n * 8 / secs / 1e6
			sc.OfferedFlowsPS = float64(r.Counts.Flows) / secs
		}
	}
}

func verdict(det string, matched []fnmDetection, start time.Time) FNMVerdict {
	v := FNMVerdict{Detector: det, Detected: len(matched) > 0}
	if !v.Detected {
		return v
	}
	first := matched[0]
	delay := first.At.Sub(start).Seconds()
	v.DelaySeconds, v.Subject, v.Power = &delay, first.Subject, first.Power
	var kinds []string
	for _, m := range matched {
		if !containsString(kinds, m.Kind) {
			kinds = append(kinds, m.Kind)
		}
	}
	v.Classification = strings.Join(kinds, ", ")
	return v
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fnmOthers lists, per detector, the findings no scenario explains: about
// other addresses (the background), or before the attacks started.
func fnmOthers(found []fnmDetection, used map[int]bool, start time.Time) []FNMOther {
	var out []FNMOther
	for _, det := range fnmDetectors {
		o := FNMOther{Detector: det}
		for i, d := range found {
			if d.Detector != det || used[i] {
				continue
			}
			o.Count++
			if len(o.Examples) < 6 {
				o.Examples = append(o.Examples, fmt.Sprintf("%s %s (%s) at %+.1fs", d.Subject, d.Kind, d.Power, d.At.Sub(start).Seconds()))
			}
		}
		out = append(out, o)
	}
	return out
}

// fnmWriteReport appends the section to report.md and adds it to
// report.json (written by flowbench before this stage, or new).
func fnmWriteReport(dir string, rep *FNMReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	section, err := json.MarshalIndent(rep, "  ", "  ")
	if err != nil {
		return err
	}
	jpath := filepath.Join(dir, "report.json")
	doc, err := os.ReadFile(jpath)
	if errors.Is(err, os.ErrNotExist) {
		doc = []byte("{}")
	} else if err != nil {
		return err
	}
	doc = bytes.TrimSpace(doc)
	if len(doc) < 2 || doc[len(doc)-1] != '}' {
		return fmt.Errorf("%s: not a JSON object", jpath)
	}
	body := bytes.TrimSpace(doc[:len(doc)-1])
	sep := ",\n"
	if bytes.Equal(body, []byte("{")) {
		sep = "\n"
	}
	merged := fmt.Sprintf("%s%s  \"fastnetmon\": %s\n}\n", body, sep, section)
	if !json.Valid([]byte(merged)) {
		return fmt.Errorf("%s: the merged report is not valid JSON", jpath)
	}
	if err := os.WriteFile(jpath, []byte(merged), 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "report.md"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(fnmMarkdown(rep))
	return err
}

func fnmMarkdown(rep *FNMReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Detection side by side: flowhouse and FastNetMon CE %s\n\n", rep.FastNetMon)
	fmt.Fprintf(&b, "Every attack at once, each with its own victim, over the background mix; each datagram to flowhouse (default configuration) and a copy to two FastNetMon instances: its defaults (%d pps, %d Mbit/s; flows off) and lowered (%d pps, %d Mbit/s, %d flows/s). Delay: from the attack's start to the alert firing (flowhouse, whole seconds) or the ban script's call (FastNetMon). Offered: as the records say, sampling-scaled. Stage wall time %.0f s.\n",
		fnmDefaults.PPS, fnmDefaults.Mbps, fnmLowered.PPS, fnmLowered.Mbps, fnmLowered.Flows, rep.WallSeconds)
	for _, p := range rep.Passes {
		fmt.Fprintf(&b, "\n### %s (%s, %d exporters, sampling 1-in-%d): %.0f flows/s achieved, attacks %.0f%% of them for %s after %s of background\n\n",
			p.Name, p.Protocols, p.Exporters, p.SamplingRate, p.AchievedRate, p.ScenarioShare*100, p.Attack, p.Warmup)
		b.WriteString("| scenario | offered | " + strings.Join(fnmDetectors, " | ") + " |\n| --- | --- |" + strings.Repeat(" --- |", len(fnmDetectors)) + "\n")
		for _, s := range p.Scenarios {
			name := s.Scenario
			if s.Control {
				name += " (control: nothing expected)"
			}
			fmt.Fprintf(&b, "| %s %s | %.0f pps, %.1f Mbit/s, %.0f flows/s |", name, strings.Join(s.Addresses, "/"), s.OfferedPPS, s.OfferedMbps, s.OfferedFlowsPS)
			for _, v := range s.Verdicts {
				b.WriteString(" " + verdictCell(v, s.Control) + " |")
			}
			b.WriteString("\n")
		}
		b.WriteString("| *findings about no attack (background, or before the attack)* | |")
		for _, o := range p.Other {
			fmt.Fprintf(&b, " %d |", o.Count)
		}
		b.WriteString("\n")
		for _, o := range p.Other {
			if len(o.Examples) > 0 {
				fmt.Fprintf(&b, "\n%s, e.g.: %s.\n", o.Detector, strings.Join(o.Examples, "; "))
			}
		}
		for _, det := range []string{detFNMDef, detFNMLow} {
			fmt.Fprintf(&b, "\n%s decoded %d of the %d flows sent; its socket dropped %d datagrams.\n", det, p.FNMReceived[det], p.FlowsSent, p.FNMDrops[det])
		}
		if p.FlowhouseError != "" {
			fmt.Fprintf(&b, "\nflowhouse alerts could not be read: %s\n", p.FlowhouseError)
		}
	}
	return b.String()
}

func verdictCell(v FNMVerdict, control bool) string {
	before := ""
	if v.BeforeAttack != "" {
		before = " (already found before the attack: " + v.BeforeAttack + ")"
	}
	if !v.Detected {
		if control {
			return "nothing raised" + before
		}
		return "no" + before
	}
	word := "yes"
	if control {
		word = "**raised**"
	}
	return fmt.Sprintf("%s: %s, %.1f s (%s)", word, v.Classification, *v.DelaySeconds, v.Power)
}
