//! Cron schedules (croner), read in each schedule's time zone.
//!
//! Missed-run policy: a schedule remembers when it last fired (state store). When it is
//! checked, if one or more occurrences fell between that time and now, it fires **once** —
//! after an hour of downtime a 15-minute schedule runs one catch-up run, not four — and the
//! next occurrence is counted from now. A schedule seen for the first time does not fire
//! until its first occurrence after start.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::error::{Error, Result};
use crate::serve::config::ServeConfig;
use crate::state::StateStore;

/// One parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    cron: croner::Cron,
    tz: Tz,
    pub connection: Option<String>,
    pub streams: Vec<String>,
    pub flows: Vec<String>,
    /// Last time it fired (or was first seen).
    last: DateTime<Utc>,
}

impl Schedule {
    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Result<DateTime<Utc>> {
        let local = t.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| Error::config(format!("schedule `{}`: {e}", self.name)))
    }

    /// When it fires next.
    pub fn next_due(&self) -> Result<DateTime<Utc>> {
        self.next_after(self.last)
    }
}

/// Every schedule of `[serve]`.
#[derive(Debug, Clone, Default)]
pub struct Scheduler {
    pub schedules: Vec<Schedule>,
}

impl Scheduler {
    /// Parses the schedules and loads their last fire times; `now` stands for a schedule
    /// never fired before.
    pub fn new(cfg: &ServeConfig, state: &StateStore, now: DateTime<Utc>) -> Result<Self> {
        let mut schedules = Vec::new();
        for (i, s) in cfg.schedules.iter().enumerate() {
            let name = s.name(i);
            let last = match state.serve_last_fired(&name)? {
                Some(t) => t,
                None => {
                    state.serve_set_last_fired(&name, now)?;
                    now
                }
            };
            schedules.push(Schedule {
                cron: s.parse_cron(i)?,
                tz: s.parse_tz(i)?,
                connection: s.connection.clone(),
                streams: s.streams.clone(),
                flows: s.flows.clone(),
                name,
                last,
            });
        }
        Ok(Self { schedules })
    }

    /// The earliest time any schedule is due.
    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|s| s.next_due().ok())
            .min()
    }

    /// The schedules due at `now` (each at most once, however many occurrences were missed),
    /// their fire time recorded in the store. A schedule another worker sharing the store
    /// fired already is not fired again here; its fire time is taken as this one's.
    pub fn due(&mut self, now: DateTime<Utc>, state: &StateStore) -> Result<Vec<Schedule>> {
        let mut out = Vec::new();
        for s in &mut self.schedules {
            let next = s.next_due()?;
            if next <= now {
                let missed = {
                    let mut n = 0u32;
                    let mut t = next;
                    while n < 1000 {
                        match s.next_after(t) {
                            Ok(x) if x <= now => {
                                n += 1;
                                t = x;
                            }
                            _ => break,
                        }
                    }
                    n
                };
                if let Some(elsewhere) = state.serve_claim_fire(&s.name, s.last, now)? {
                    tracing::debug!(schedule = %s.name, at = %elsewhere, "fired by another worker");
                    s.last = elsewhere;
                    continue;
                }
                if missed > 0 {
                    tracing::info!(schedule = %s.name, missed, "occurrences missed while not running: firing once");
                }
                s.last = now;
                out.push(s.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::config::ScheduleConfig;
    use chrono::TimeZone;

    fn cfg(cron: &str, tz: &str) -> ServeConfig {
        ServeConfig {
            schedules: vec![ScheduleConfig {
                name: Some("s".into()),
                cron: cron.into(),
                time_zone: tz.into(),
                connection: None,
                streams: vec![],
                flows: vec![],
            }],
            ..Default::default()
        }
    }

    #[test]
    fn fires_on_time_and_once_after_downtime() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("s.db")).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 1, 0).unwrap();
        let mut s = Scheduler::new(&cfg("0 */15 * * * *", "UTC"), &state, t0).unwrap();
        assert_eq!(
            s.next_due(),
            Some(Utc.with_ymd_and_hms(2026, 3, 1, 10, 15, 0).unwrap())
        );
        assert!(
            s.due(t0 + chrono::Duration::minutes(13), &state)
                .unwrap()
                .is_empty()
        );
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 15, 0).unwrap();
        assert_eq!(s.due(at, &state).unwrap().len(), 1);
        assert!(s.due(at, &state).unwrap().is_empty());
        // Restart after 3 hours down: one catch-up, then on the quarter again.
        let later = at + chrono::Duration::hours(3) + chrono::Duration::minutes(2);
        let mut s = Scheduler::new(&cfg("0 */15 * * * *", "UTC"), &state, later).unwrap();
        assert_eq!(s.due(later, &state).unwrap().len(), 1);
        assert!(
            s.due(later + chrono::Duration::minutes(5), &state)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            s.due(later + chrono::Duration::minutes(13), &state)
                .unwrap()
                .len(),
            1
        );
    }

    /// Two `mlc serve` workers sharing one state store: each due occurrence fires once, on
    /// whichever worker asks first, and both then wait for the same next one.
    #[test]
    fn workers_sharing_a_store_fire_each_occurrence_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("s.db")).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 10, 1, 0).unwrap();
        let mut a = Scheduler::new(&cfg("0 */15 * * * *", "UTC"), &state, t0).unwrap();
        let mut b = Scheduler::new(&cfg("0 */15 * * * *", "UTC"), &state, t0).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 15, 0).unwrap();
        let fired = a.due(at, &state).unwrap().len() + b.due(at, &state).unwrap().len();
        assert_eq!(fired, 1);
        assert_eq!(a.next_due(), b.next_due());
        // The next occurrence: the other worker may win it.
        let next = at + chrono::Duration::minutes(15);
        let fired = b.due(next, &state).unwrap().len() + a.due(next, &state).unwrap().len();
        assert_eq!(fired, 1);
    }

    #[test]
    fn reads_the_expression_in_its_zone() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(&dir.path().join("s.db")).unwrap();
        // 02:00 every day in Paris = 01:00 UTC in winter.
        let t0 = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        let s = Scheduler::new(&cfg("0 2 * * *", "Europe/Paris"), &state, t0).unwrap();
        assert_eq!(
            s.next_due(),
            Some(Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).unwrap())
        );
    }
}
