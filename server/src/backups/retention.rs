//! Which archives a job keeps: keep-last plus grandfather-father-son
//! (daily, weekly, monthly), computed on the job's own archives in its time
//! zone. Pure: the caller passes the archives and the policy and gets the
//! decision, so the preview the panel shows is exactly what pruning does.
//!
//! Two archives are never deleted whatever the policy says: the newest one
//! whose upload was verified, and the newest one a restore drill passed on;
//! nor is one a restore or drill is reading.
//! Only succeeded archives are candidates; a failed run has no archive and
//! cannot make retention delete anything.

use std::collections::{BTreeMap, BTreeSet};

use app::api::backups::Retention;
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub run_id: String,
    /// Unix seconds.
    pub started_at: i64,
    /// The order runs were started in (the row's insertion order): which
    /// of two archives of the same second is newer.
    pub seq: i64,
    pub verified: bool,
    pub drilled: bool,
    /// A restore or drill is reading it right now.
    pub in_use: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Run id → why it is kept, newest first.
    pub keep: Vec<(String, Vec<&'static str>)>,
    /// Newest first.
    pub delete: Vec<String>,
}

pub fn decide(archives: &[Archive], policy: &Retention, tz: &TimeZone) -> Decision {
    let mut sorted: Vec<&Archive> = archives.iter().collect();
    sorted.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.seq.cmp(&a.seq))
    });
    let mut reasons: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    let everything =
        policy.keep_last == 0 && policy.daily == 0 && policy.weekly == 0 && policy.monthly == 0;

    for a in sorted.iter().take(policy.keep_last as usize) {
        reasons.entry(&a.run_id).or_default().push("last");
    }
    // The newest archive of each period, for the newest `n` periods that
    // have one.
    let mut bucket = |n: u32, label: &'static str, key: &dyn Fn(&Archive) -> (i32, i32)| {
        let mut seen = BTreeSet::new();
        for a in &sorted {
            if seen.len() == n as usize {
                break;
            }
            if seen.insert(key(a)) {
                reasons.entry(&a.run_id).or_default().push(label);
            }
        }
    };
    let local = |a: &Archive| {
        Timestamp::from_second(a.started_at)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(tz.clone())
            .date()
    };
    bucket(policy.daily, "daily", &|a| {
        let d = local(a);
        (d.year() as i32, d.day_of_year() as i32)
    });
    bucket(policy.weekly, "weekly", &|a| {
        let w = local(a).iso_week_date();
        (w.year() as i32, w.week() as i32)
    });
    bucket(policy.monthly, "monthly", &|a| {
        let d = local(a);
        (d.year() as i32, d.month() as i32)
    });
    if let Some(a) = sorted.iter().find(|a| a.verified) {
        reasons
            .entry(&a.run_id)
            .or_default()
            .push("newest_verified");
    }
    if let Some(a) = sorted.iter().find(|a| a.drilled) {
        reasons.entry(&a.run_id).or_default().push("newest_drilled");
    }
    for a in sorted.iter().filter(|a| a.in_use) {
        reasons.entry(&a.run_id).or_default().push("in_use");
    }

    let mut decision = Decision::default();
    for a in sorted {
        match reasons.get(a.run_id.as_str()) {
            Some(r) => decision.keep.push((a.run_id.clone(), r.clone())),
            None if everything => decision
                .keep
                .push((a.run_id.clone(), vec!["policy_keeps_all"])),
            None => decision.delete.push(a.run_id.clone()),
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(id: &str, iso: &str, verified: bool) -> Archive {
        let started_at = iso.parse::<Timestamp>().unwrap().as_second();
        Archive {
            run_id: id.into(),
            started_at,
            seq: started_at,
            verified,
            drilled: false,
            in_use: false,
        }
    }

    fn policy(keep_last: u32, daily: u32, weekly: u32, monthly: u32) -> Retention {
        Retention {
            keep_last,
            daily,
            weekly,
            monthly,
        }
    }

    /// Nightly archives for 90 days, then the policy 2/7/4/3.
    #[test]
    fn grandfather_father_son_over_ninety_nights() {
        let start: Timestamp = "2026-09-01T03:00:00Z".parse().unwrap();
        let archives: Vec<Archive> = (0..90)
            .map(|i| Archive {
                run_id: format!("r{i:02}"),
                started_at: start.as_second() + i * 86_400,
                seq: i,
                verified: true,
                drilled: false,
                in_use: false,
            })
            .collect();
        let d = decide(&archives, &policy(2, 7, 4, 3), &TimeZone::UTC);
        let kept: BTreeSet<&str> = d.keep.iter().map(|(id, _)| id.as_str()).collect();
        // Last 7 days: r83..r89 (r88, r89 also "last").
        for i in 83..90 {
            assert!(kept.contains(format!("r{i:02}").as_str()), "day {i}");
        }
        // 2026-11-29 (r89) is a Sunday: weekly picks the newest of the ISO
        // weeks ending 29 Nov, 22 Nov, 15 Nov, 8 Nov → r89, r82, r75, r68.
        for id in ["r82", "r75", "r68"] {
            assert!(kept.contains(id), "{id} weekly");
        }
        // Monthly: newest of November (r89), October (r60 = 31 Oct), September (r29 = 30 Sep).
        for id in ["r60", "r29"] {
            assert!(kept.contains(id), "{id} monthly");
        }
        assert_eq!(kept.len(), 7 + 3 + 2, "{kept:?}");
        assert_eq!(d.keep.len() + d.delete.len(), 90);
        let r89 = &d.keep.iter().find(|(id, _)| id == "r89").unwrap().1;
        assert_eq!(
            r89,
            &vec!["last", "daily", "weekly", "monthly", "newest_verified"]
        );
    }

    #[test]
    fn the_newest_verified_and_the_newest_drilled_are_never_deleted() {
        let mut archives = vec![
            archive("old-verified", "2026-11-01T03:00:00Z", true),
            archive("new-unverified-1", "2026-11-28T03:00:00Z", false),
            archive("new-unverified-2", "2026-11-29T03:00:00Z", false),
        ];
        archives.push(Archive {
            drilled: true,
            ..archive("drilled", "2026-10-01T03:00:00Z", false)
        });
        let d = decide(&archives, &policy(1, 0, 0, 0), &TimeZone::UTC);
        assert_eq!(d.delete, vec!["new-unverified-1".to_string()]);
        let reasons: BTreeMap<_, _> = d.keep.into_iter().collect();
        assert_eq!(reasons["old-verified"], vec!["newest_verified"]);
        assert_eq!(reasons["drilled"], vec!["newest_drilled"]);
        assert_eq!(reasons["new-unverified-2"], vec!["last"]);
    }

    #[test]
    fn days_are_counted_in_the_jobs_time_zone() {
        // 23:30 UTC on the 28th is already the 29th in Berlin.
        let archives = vec![
            archive("a", "2026-11-28T22:30:00Z", true),
            archive("b", "2026-11-28T23:30:00Z", true),
            archive("c", "2026-11-29T10:00:00Z", true),
        ];
        // UTC: the 28th's newest is b, the 29th's is c.
        let utc = decide(&archives, &policy(0, 2, 0, 0), &TimeZone::UTC);
        assert_eq!(utc.delete, vec!["a".to_string()]);
        // Berlin: b (00:30) and c are the 29th's, a (23:30) is the 28th's.
        let berlin = decide(
            &archives,
            &policy(0, 2, 0, 0),
            &TimeZone::get("Europe/Berlin").unwrap(),
        );
        assert_eq!(berlin.delete, vec!["b".to_string()]);
    }

    #[test]
    fn of_two_archives_in_one_second_the_later_started_is_newer() {
        // Run ids are random: the later one may sort first by name.
        let older = Archive {
            seq: 1,
            ..archive("ffff", "2026-11-29T03:00:00Z", true)
        };
        let newer = Archive {
            seq: 2,
            ..archive("0000", "2026-11-29T03:00:00Z", true)
        };
        let d = decide(&[older, newer], &policy(1, 0, 0, 0), &TimeZone::UTC);
        assert_eq!(d.delete, vec!["ffff".to_string()]);
        assert_eq!(d.keep[0].0, "0000");
    }

    #[test]
    fn an_all_zero_policy_keeps_everything() {
        let archives = vec![
            archive("a", "2026-11-28T22:30:00Z", false),
            archive("b", "2026-11-20T23:30:00Z", false),
        ];
        let d = decide(&archives, &policy(0, 0, 0, 0), &TimeZone::UTC);
        assert!(d.delete.is_empty());
        assert_eq!(d.keep.len(), 2);
    }
}
