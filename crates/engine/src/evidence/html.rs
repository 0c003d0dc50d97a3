//! The evidence as one self-contained HTML page: inline CSS, inline SVG charts, no script
//! and no external assets, so that it renders the same offline and years later.

use std::fmt::Write;

use super::{Evidence, PolicyEvidence};

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn span(seconds: f64) -> String {
    // Under a second in milliseconds: a scale of "0.0s" would say nothing.
    if seconds < 1.0 {
        format!("{:.0}ms", seconds * 1000.0)
    } else if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        humantime::format_duration(std::time::Duration::from_secs(seconds as u64)).to_string()
    }
}

fn when(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

const STYLE: &str = "*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:2rem auto;padding:0 1rem;color:#1d2330;max-width:1000px}\
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccd;overflow-wrap:anywhere}\
p,li{overflow-wrap:anywhere}code{overflow-wrap:anywhere}\
table{border-collapse:collapse;margin:.5rem 0;width:100%;table-layout:fixed}td,th{border:1px solid #ccd;padding:.25rem .5rem;text-align:left;vertical-align:top;font-size:.9rem;overflow-wrap:anywhere}\
th{background:#f2f4f8}.passed,.met,.intact{color:#166534;font-weight:600}.failed,.breached,.broken{color:#b91c1c;font-weight:600}\
.skipped{color:#92400e}.muted{color:#667}svg{background:#fafbfd;border:1px solid #dde;max-width:100%;height:auto}\
@media (max-width:40rem){body{margin:1rem auto}table,thead,tbody,tr,th,td{display:block;width:100%}tr{margin-bottom:.6rem;border-top:2px solid #ccd}td,th{border-top:none}}";

/// A chart's two axes, in a frame of width `w`, height `h`, `left` and `bottom` margins.
fn axes(svg: &mut String, (w, h, left, bottom): (f64, f64, f64, f64)) {
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#889\"/><line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{0}\" stroke=\"#889\"/>",
        h - bottom,
        w - 10.0
    );
}

/// The objective `seconds`, drawn at height `at` as a dashed line with its label.
fn objective_line(svg: &mut String, (w, left): (f64, f64), seconds: f64, at: f64) {
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{at:.1}\" x2=\"{}\" y2=\"{at:.1}\" stroke=\"#b91c1c\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#b91c1c\">objective {}</text>",
        w - 10.0,
        left + 4.0,
        at - 4.0,
        escape(&span(seconds))
    );
}

/// The value axis's top (`peak`) and zero, the time axis's two ends, and the chart's end.
fn axis_labels(
    svg: &mut String,
    (w, h, left, bottom): (f64, f64, f64, f64),
    peak: f64,
    (from, to): (jiff::Timestamp, jiff::Timestamp),
) {
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"16\" font-size=\"11\">{}</text><text x=\"4\" y=\"{:.1}\" font-size=\"11\">0</text><text x=\"{left}\" y=\"{:.1}\" font-size=\"11\">{}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        escape(&span(peak)),
        h - bottom,
        h - 6.0,
        escape(&when(from)),
        w - 10.0,
        h - 6.0,
        escape(&when(to))
    );
}

/// The RPO exposure over the period as a line, the objective as a dashed line, breaches
/// shaded.
pub(crate) fn rpo_chart(p: &PolicyEvidence, from: jiff::Timestamp, to: jiff::Timestamp) -> String {
    let (w, h, left, bottom) = (720.0, 200.0, 60.0, 24.0);
    let span_s = to.duration_since(from).as_secs_f64().max(1.0);
    let objective = p.objectives.rpo_seconds.map(|o| o as f64);
    let peak = p
        .rpo
        .series
        .iter()
        .map(|(_, s)| *s as f64)
        .fold(objective.unwrap_or(1.0) * 1.2, f64::max)
        .max(1.0);
    let x = |t: jiff::Timestamp| {
        left + (t.duration_since(from).as_secs_f64() / span_s) * (w - left - 10.0)
    };
    let y = |s: f64| (h - bottom) - (s / peak) * (h - bottom - 10.0);
    let mut svg = format!(
        "<svg class=\"rpo-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"RPO exposure of {}\">",
        escape(&p.policy)
    );
    for b in &p.rpo.breaches {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"10\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#fecaca\"/>",
            x(b.from),
            (x(b.to) - x(b.from)).max(1.0),
            h - bottom - 10.0
        );
    }
    axes(&mut svg, (w, h, left, bottom));
    if let Some(o) = objective {
        objective_line(&mut svg, (w, left), o, y(o));
    }
    let points: Vec<String> = p
        .rpo
        .series
        .iter()
        .map(|(t, s)| format!("{:.1},{:.1}", x(*t), y(*s as f64)))
        .collect();
    if !points.is_empty() {
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#1d4ed8\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
    }
    axis_labels(&mut svg, (w, h, left, bottom), peak, (from, to));
    svg
}

/// One bar of a [`time_bars`] chart: a value in seconds at a time, or none (a cross: the
/// thing measured did not happen, which is never drawn as a bar of 0).
pub(crate) struct Bar {
    pub at: jiff::Timestamp,
    pub seconds: Option<f64>,
    pub ok: bool,
    /// What the bar is, for its tooltip (`d1` → "d1 at 2026-11-02 03:00 UTC: 41.0s").
    pub name: String,
}

/// Durations over a period: each bar at its time on a dated axis, against the objective
/// drawn as a labelled dashed line. `missing` says what a bar without a value means.
pub(crate) fn time_bars(
    class: &str,
    aria: &str,
    bars: &[Bar],
    objective: Option<f64>,
    missing: &str,
    from: jiff::Timestamp,
    to: jiff::Timestamp,
) -> String {
    let (w, h, left, bottom) = (720.0, 140.0, 60.0, 24.0);
    let span_s = to.duration_since(from).as_secs_f64().max(1.0);
    let x = |t: jiff::Timestamp| {
        left + (t.duration_since(from).as_secs_f64() / span_s).clamp(0.0, 1.0) * (w - left - 16.0)
    };
    let peak = bars
        .iter()
        .filter_map(|b| b.seconds)
        .fold(objective.unwrap_or(0.0) * 1.2, f64::max)
        .max(0.001);
    let y = |s: f64| (h - bottom) - (s / peak) * (h - bottom - 12.0);
    let mut svg = format!(
        "<svg class=\"{class}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        escape(aria)
    );
    axes(&mut svg, (w, h, left, bottom));
    for bar in bars {
        let at = x(bar.at);
        match bar.seconds {
            Some(value) => {
                let color = if bar.ok { "#16a34a" } else { "#dc2626" };
                let _ = write!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"14\" height=\"{:.1}\" fill=\"{color}\"><title>{} at {}: {}</title></rect>",
                    at - 7.0,
                    y(value),
                    ((h - bottom) - y(value)).max(1.0),
                    escape(&bar.name),
                    escape(&when(bar.at)),
                    escape(&span(value))
                );
            }
            None => {
                let base = h - bottom;
                let _ = write!(
                    svg,
                    "<path d=\"M{:.1} {:.1} l8 -8 M{:.1} {:.1} l8 8\" stroke=\"#dc2626\" stroke-width=\"2\"><title>{} at {}: {}</title></path>",
                    at - 4.0,
                    base - 2.0,
                    at - 4.0,
                    base - 10.0,
                    escape(&bar.name),
                    escape(&when(bar.at)),
                    escape(missing)
                );
            }
        }
    }
    if let Some(o) = objective {
        objective_line(&mut svg, (w, left), o, y(o));
    }
    axis_labels(&mut svg, (w, h, left, bottom), peak, (from, to));
    svg
}

/// Each drill's RTO as a bar at its time in the period, against the labelled objective.
pub(crate) fn rto_chart(p: &PolicyEvidence, from: jiff::Timestamp, to: jiff::Timestamp) -> String {
    if p.drills.is_empty() {
        return String::new();
    }
    let bars: Vec<Bar> = p
        .drills
        .iter()
        .map(|d| Bar {
            at: d.started_at,
            seconds: d.rto_seconds,
            ok: d.status == "passed",
            name: d.drill_id.clone(),
        })
        .collect();
    time_bars(
        "rto-chart",
        &format!("RTO of each drill of {} over the period", p.policy),
        &bars,
        p.objectives.rto_seconds.map(|o| o as f64),
        "not restored",
        from,
        to,
    )
}

pub fn render(e: &Evidence) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Backstop evidence {} to {}</title><style>{STYLE}</style></head><body>",
        escape(&when(e.period.from)),
        escape(&when(e.period.to))
    );
    let _ = write!(
        out,
        "<h1>Restore-test evidence</h1><p>Period <b>{}</b> to <b>{}</b>, generated {} on {}. Schema <code>{}</code>.</p>",
        escape(&when(e.period.from)),
        escape(&when(e.period.to)),
        escape(&when(e.generated_at)),
        escape(&e.host),
        escape(&e.schema)
    );
    let audit = match e.audit.status.as_str() {
        "intact" => format!(
            "<span class=\"intact\">intact</span>: {} events, head <code>{}</code>; {} anchor(s) in the repositories agree",
            e.audit.events.unwrap_or(0),
            escape(e.audit.head.as_deref().unwrap_or("")),
            e.audit.anchors
        ),
        "contradicted" => format!(
            "<span class=\"broken\">CONTRADICTED</span> by the repositories' anchors ({} events in the catalog): {}",
            e.audit.events.unwrap_or(0),
            escape(&e.audit.anchor_problems.join("; "))
        ),
        _ => format!(
            "<span class=\"broken\">BROKEN</span> at event #{}: {}",
            e.audit.broken_at.unwrap_or(0),
            escape(e.audit.reason.as_deref().unwrap_or(""))
        ),
    };
    let unread = if e.audit.anchors_unread.is_empty() {
        String::new()
    } else {
        format!(
            " Anchors not checked in: {}.",
            escape(&e.audit.anchors_unread.join("; "))
        )
    };
    let _ = write!(out, "<p>Audit chain: {audit}.{unread}</p>");
    for sd in &e.systems {
        let members: Vec<String> = sd
            .members
            .iter()
            .map(|m| {
                format!(
                    "{} {} ({})",
                    m.policy,
                    m.status,
                    m.rto_seconds
                        .map(span)
                        .unwrap_or_else(|| "not restored".into())
                )
            })
            .collect();
        let checks: Vec<String> = sd
            .checks
            .iter()
            .map(|c| format!("{} {}", c.name, c.status))
            .collect();
        let _ = write!(
            out,
            "<h2>System {}</h2><table><tr><th>drill</th><th>status</th><th>system RTO</th><th>RPO</th><th>members</th><th>checks</th><th>sign-off</th></tr>\
             <tr><td>{}<br><span class=\"muted\">{}</span></td><td><span class=\"{}\">{}</span></td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
            escape(&sd.system),
            escape(&sd.drill_id),
            escape(&when(sd.started_at)),
            if sd.status == "passed" { "passed" } else { "failed" },
            escape(&sd.status),
            sd.rto_seconds.map(span).unwrap_or_else(|| "none".into()),
            sd.rto_objective_seconds
                .map(|o| format!(" (objective {})", span(o)))
                .unwrap_or_default(),
            span(sd.rpo_seconds),
            escape(&members.join("; ")),
            escape(&checks.join("; ")),
            escape(
                &sd.signoff
                    .as_ref()
                    .map(|s| format!("{} at {}", s.principal, when(s.signed_at)))
                    .unwrap_or_else(|| "not signed off".into())
            )
        );
    }
    for p in &e.policies {
        let _ = write!(
            out,
            "<h2 id=\"policy-{0}\">{0} <span class=\"muted\">({1}, repository {2})</span></h2>",
            escape(&p.policy),
            escape(&p.source_kind),
            escape(&p.repository)
        );
        let worst = match &p.rpo.worst {
            Some(g) if g.since.is_some() => span(g.exposure.as_secs_f64()),
            Some(g) => format!(
                "at least {} until {} (no restorable point since the first backup)",
                span(g.exposure.as_secs_f64()),
                when(g.until)
            ),
            None => "none (the policy's first backup came after the period)".into(),
        };
        let verdict = |breached: bool| {
            if breached {
                "<span class=\"breached\">breached</span>"
            } else {
                "<span class=\"met\">met</span>"
            }
        };
        let rpo_objective = p
            .objectives
            .rpo_seconds
            .map(|o| span(o as f64))
            .unwrap_or_else(|| "none".into());
        let rto_objective = p
            .objectives
            .rto_seconds
            .map(|o| span(o as f64))
            .unwrap_or_else(|| "none".into());
        let measured: Vec<f64> = p.drills.iter().filter_map(|d| d.rto_seconds).collect();
        let worst_rto = measured.iter().copied().fold(0.0, f64::max);
        // Met only by a drill that restored: a period whose drills never completed a
        // restore has no recovery time to hold against the objective.
        let rto_verdict = if measured.is_empty() {
            "<span class=\"breached\">not shown</span>"
        } else {
            verdict(p.drills.iter().any(|d| d.rto_breached))
        };
        let _ = write!(
            out,
            "<table><tr><th>objective</th><th>target</th><th>achieved</th><th>verdict</th></tr>\
             <tr><td>RPO</td><td>{}</td><td>worst exposure {}; {} breach(es)</td><td>{}</td></tr>\
             <tr><td>RTO</td><td>{}</td><td>slowest drill {}</td><td>{}</td></tr></table>",
            escape(&rpo_objective),
            escape(&worst),
            p.rpo.breaches.len(),
            verdict(!p.rpo.breaches.is_empty()),
            escape(&rto_objective),
            if p.drills.is_empty() {
                "no drill".into()
            } else if measured.is_empty() {
                "no drill restored".into()
            } else {
                span(worst_rto)
            },
            rto_verdict,
        );
        if let Some(v) = &p.verification {
            let _ = write!(
                out,
                "<p>Verification: {} (repository {}, {} packs, as of the check at {}).</p>",
                match v.every_pack_read_within_seconds {
                    Some(within) => format!(
                        "every pack read within the {} before that check",
                        span(within as f64)
                    ),
                    None => format!("{} of {} packs never read", v.packs_never_read, v.packs),
                },
                escape(&v.repository),
                v.packs,
                escape(&when(v.checked_at))
            );
        }
        if let Some(c) = &p.compliance {
            let _ = write!(
                out,
                "<h3>Requirements</h3><table><tr><th>requirement</th><th>required</th><th>achieved</th><th>verdict</th></tr>"
            );
            for r in &c.requirements {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td></tr>",
                    escape(&r.requirement),
                    escape(&r.required),
                    escape(&r.achieved),
                    escape(&r.evidence.join("; ")),
                    if r.met {
                        "<span class=\"met\">met</span>"
                    } else {
                        "<span class=\"breached\">not met</span>"
                    }
                );
            }
            let _ = write!(out, "</table>");
        }
        let runs: Vec<String> = p
            .backups
            .runs
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let _ = write!(
            out,
            "<p>Backups: {} ({} snapshot(s) taken, {} bytes added). Owners: recovery {}, backup {}, approvers {}.</p>",
            escape(&if runs.is_empty() { "none".into() } else { runs.join(", ") }),
            p.backups.snapshots,
            p.backups.bytes_added,
            escape(p.owners.recovery.as_deref().unwrap_or("-")),
            escape(p.owners.backup.as_deref().unwrap_or("-")),
            escape(&p.owners.approvers.join(", "))
        );
        let _ = write!(
            out,
            "<h3>RPO exposure</h3>{}",
            rpo_chart(p, e.period.from, e.period.to)
        );
        for b in &p.rpo.breaches {
            let peak = match b.since {
                Some(_) => format!("peak {}", span(b.peak.as_secs_f64())),
                None => "no restorable point yet".into(),
            };
            let _ = write!(
                out,
                "<p class=\"breached\">Breach from {} to {} ({})</p>",
                escape(&when(b.from)),
                escape(&when(b.to)),
                escape(&peak)
            );
        }
        let _ = write!(out, "<h3>Restore requests</h3>");
        if p.restore_requests.is_empty() {
            let _ = write!(
                out,
                "<p class=\"muted\">No restore request in this period.</p>"
            );
        } else {
            let _ = write!(out, "<table><tr><th>request</th><th>asked by</th><th>decided by</th><th>target</th><th>outcome</th></tr>");
            for r in &p.restore_requests {
                let _ = write!(
                    out,
                    "<tr><td>{}<br><span class=\"muted\">{}</span></td><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td><td>{}{}</td><td><span class=\"{}\">{}</span> {}</td></tr>",
                    escape(&r.request_id),
                    escape(&when(r.created_at)),
                    escape(&r.requester),
                    escape(&r.reason),
                    escape(r.decided_by.as_deref().unwrap_or("-")),
                    escape(&r.target),
                    if r.allow_overlap { " <b>(over the source, as asked)</b>" } else { "" },
                    match r.status.as_str() {
                        "succeeded" => "passed",
                        "failed" | "rejected" | "expired" => "failed",
                        _ => "skipped",
                    },
                    escape(&r.status),
                    escape(r.outcome.as_deref().unwrap_or(""))
                );
            }
            let _ = write!(out, "</table>");
        }
        let _ = write!(out, "<h3>Drills</h3>");
        if p.drills.is_empty() {
            let _ = write!(out, "<p class=\"muted\">No drill in this period.</p>");
            continue;
        }
        let _ = write!(out, "{}", rto_chart(p, e.period.from, e.period.to));
        let _ = write!(
            out,
            "<table><tr><th>drill</th><th>result</th><th>RTO (fetch / decode / load / checks)</th><th>RPO</th><th>checks</th><th>sign-off</th></tr>"
        );
        for d in &p.drills {
            let b = &d.rto_breakdown;
            let checks: Vec<String> = d
                .checks
                .iter()
                .map(|c| {
                    format!(
                        "<span class=\"{0}\">{0}</span> {1} <span class=\"muted\">{2}</span>",
                        escape(&c.status),
                        escape(&c.name),
                        escape(&c.detail)
                    )
                })
                .collect();
            let signoff = match &d.signoff {
                Some(s) => format!(
                    "{} at {}: {}",
                    escape(&s.principal),
                    escape(&when(s.signed_at)),
                    escape(&s.comment)
                ),
                None if d.status == "passed" => "<span class=\"skipped\">pending</span>".into(),
                None => "-".into(),
            };
            let _ = write!(
                out,
                "<tr><td>{}<br><span class=\"muted\">{} · snapshot {}</span></td><td><span class=\"{}\">{}</span>{}</td><td>{} ({} / {} / {} / {})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.drill_id),
                escape(&when(d.started_at)),
                escape(&d.snapshot_id[..d.snapshot_id.len().min(12)]),
                escape(&d.status),
                escape(&d.status),
                d.error.as_ref().map(|e| format!("<br>{}", escape(e))).unwrap_or_default(),
                escape(&d.rto_seconds.map(span).unwrap_or_else(|| "none (not restored)".into())),
                escape(&span(b.fetch_seconds)),
                escape(&span(b.decode_seconds)),
                escape(&span(b.load_seconds)),
                escape(&span(b.checks_seconds)),
                escape(&span(d.rpo_seconds)),
                checks.join("<br>"),
                signoff
            );
        }
        let _ = write!(out, "</table>");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    fn drill(id: &str, at: &str, status: &str, rto: Option<f64>) -> serde_json::Value {
        serde_json::json!({
            "drill_id": id, "started_at": at, "snapshot_id": "ab", "status": status,
            "rto_seconds": rto,
            "rto_breakdown": {"fetch_seconds": 0.0, "decode_seconds": 0.0, "load_seconds": 0.0, "checks_seconds": 0.0},
            "rto_breached": false, "rpo_seconds": 1.0, "checks": [], "error": null, "signoff": null
        })
    }

    /// Issue 19: the drill chart has a time axis and a labelled objective, and a drill that
    /// did not restore shows as not restored, never as a bar of 0 s.
    #[test]
    fn the_drill_chart_has_a_time_axis_a_labelled_objective_and_no_zero_bar() {
        let p: super::PolicyEvidence = serde_json::from_value(serde_json::json!({
            "policy": "orders", "source_kind": "postgres", "repository": "main",
            "owners": {"backup": null, "recovery": null, "approvers": []},
            "objectives": {"rpo_seconds": 3600, "rto_seconds": 600},
            "backups": {"runs": {}, "bytes_added": 0, "snapshots": 0},
            "rpo": {"worst": null, "breaches": [], "series": []},
            "drills": [
                drill("d1", "2026-11-02T03:00:00Z", "passed", Some(41.0)),
                drill("d2", "2026-11-20T03:00:00Z", "failed", None),
            ],
            "restore_requests": []
        }))
        .unwrap();
        let from: jiff::Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let to: jiff::Timestamp = "2026-11-30T23:59:59Z".parse().unwrap();
        let svg = super::rto_chart(&p, from, to);
        assert!(svg.contains(">objective 10m<"), "{svg}");
        assert!(
            svg.contains(">2026-11-01") && svg.contains(">2026-11-30"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect").count(),
            1,
            "one bar, for the drill that restored"
        );
        assert!(
            svg.contains("d2 at 2026-11-20") && svg.contains("not restored"),
            "{svg}"
        );
        // Bars stand at their time: d1 on the 2nd is near the left end.
        let x: f64 = svg
            .split("<rect x=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(x < 100.0, "{x}");
    }

    /// Issue 19: the RPO exposure over time is a line, against a labelled objective, with
    /// the stretch over the objective shaded where it happened on a dated axis.
    #[test]
    fn the_rpo_chart_is_a_line_with_its_breaches_shaded_at_their_time() {
        let mut p: super::PolicyEvidence = serde_json::from_value(serde_json::json!({
            "policy": "orders", "source_kind": "postgres", "repository": "main",
            "owners": {"backup": null, "recovery": null, "approvers": []},
            "objectives": {"rpo_seconds": 3600, "rto_seconds": null},
            "backups": {"runs": {}, "bytes_added": 0, "snapshots": 0},
            "rpo": {"worst": null, "breaches": [], "series": []},
            "drills": [],
            "restore_requests": []
        }))
        .unwrap();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        let (from, to) = (t("2026-11-01T00:00:00Z"), t("2026-11-30T00:00:00Z"));
        // Hourly backups, then a day and a half without one from the 15th.
        p.rpo.series = vec![
            (t("2026-11-01T00:00:00Z"), 0),
            (t("2026-11-15T00:00:00Z"), 3_000),
            (t("2026-11-16T12:00:00Z"), 129_600),
            (t("2026-11-16T12:00:01Z"), 0),
            (t("2026-11-30T00:00:00Z"), 1_800),
        ];
        p.rpo.breaches = vec![crate::drill::objectives::Breach {
            from: t("2026-11-15T01:00:00Z"),
            to: t("2026-11-16T12:00:00Z"),
            peak: std::time::Duration::from_secs(129_600),
            since: Some(t("2026-11-15T00:00:00Z")),
        }];
        let svg = super::rpo_chart(&p, from, to);
        assert!(svg.contains("<polyline"), "the exposure is a line: {svg}");
        assert!(svg.contains(">objective 1h<"), "{svg}");
        assert!(
            svg.contains(">2026-11-01 00:00 UTC<") && svg.contains(">2026-11-30 00:00 UTC<"),
            "{svg}"
        );
        let shaded: Vec<f64> = svg
            .split("fill=\"#fecaca\"")
            .next()
            .unwrap()
            .rsplit("<rect ")
            .next()
            .unwrap()
            .split('"')
            .filter_map(|v| v.parse().ok())
            .collect();
        assert_eq!(svg.matches("#fecaca").count(), 1, "one breach, one shade");
        // x, y, width, height: the 15th to the 16th of a month-long axis, in its middle.
        let (x, width) = (shaded[0], shaded[2]);
        assert!(x > 300.0 && x < 400.0, "{x}");
        assert!(width > 10.0 && width < 50.0, "{width}");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            super::escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
