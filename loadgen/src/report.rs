//! The results table and its JSON.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// The target, as text ("<= 16384").
    pub target: Option<String>,
    pub met: Option<bool>,
    /// The floor server's figure for the same metric, and dispatcher ÷ floor.
    pub floor: Option<f64>,
    pub ratio_to_floor: Option<f64>,
}

#[derive(Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

pub enum Goal {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Report {
    pub fn add(
        &mut self,
        scenario: &str,
        metric: &str,
        value: f64,
        unit: &str,
        goal: Goal,
    ) -> &mut Row {
        let (target, met) = match goal {
            Goal::AtMost(t) => (Some(format!("<= {t}")), Some(value <= t)),
            Goal::AtLeast(t) => (Some(format!(">= {t}")), Some(value >= t)),
            Goal::None => (None, None),
        };
        self.rows.push(Row {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            target,
            met,
            floor: None,
            ratio_to_floor: None,
        });
        self.rows.last_mut().unwrap()
    }

    pub fn print(&self) {
        println!(
            "\n{:<10} {:<40} {:>14} {:<8} {:>14} {:<5} {:>12} {:>8}",
            "scenario", "metric", "value", "unit", "target", "met", "floor", "ratio"
        );
        for r in &self.rows {
            println!(
                "{:<10} {:<40} {:>14} {:<8} {:>14} {:<5} {:>12} {:>8}",
                r.scenario,
                r.metric,
                fmt(r.value),
                r.unit,
                r.target.clone().unwrap_or_default(),
                r.met.map_or(String::new(), |m| if m {
                    "yes".into()
                } else {
                    "NO".into()
                }),
                r.floor.map(fmt).unwrap_or_default(),
                r.ratio_to_floor
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_default(),
            );
        }
    }
}

impl Row {
    pub fn against_floor(&mut self, floor: f64) {
        self.floor = Some(floor);
        self.ratio_to_floor = (floor > 0.0).then(|| self.value / floor);
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
