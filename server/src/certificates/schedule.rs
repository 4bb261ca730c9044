//! When to renew and when to retry. Nothing here assumes a 90-day
//! certificate: the times come from the certificate's own validity, from the
//! CA's renewal information (RFC 9773), or from the count of failures.

use rand::Rng;

/// Renewal time without ARI: two thirds into the validity period, moved
/// earlier by a random amount of up to 1/30 of it so that many certificates
/// issued together do not all renew in the same minute.
pub fn two_thirds(not_before: i64, not_after: i64, rng: &mut impl Rng) -> i64 {
    let lifetime = (not_after - not_before).max(1);
    let base = not_before + lifetime * 2 / 3;
    let jitter = rng.gen_range(0..=(lifetime / 30).max(0));
    base - jitter
}

/// A uniformly random moment in the CA's suggested window (RFC 9773 §4.2),
/// or its start if the window is empty or inverted.
pub fn in_window(start: i64, end: i64, rng: &mut impl Rng) -> i64 {
    if end <= start {
        return start;
    }
    rng.gen_range(start..end)
}

/// Delay before retry number `failures` (1 = after the first failure):
/// about 1 minute, 10 minutes, 100 minutes, then daily. With this, at most
/// three attempts for a name fall in any hour, under Let's Encrypt's limit of
/// five failed validations per hostname per hour.
pub fn backoff(failures: u32) -> i64 {
    match failures {
        0 => 0,
        1 => 60,
        2 => 600,
        3 => 6_000,
        _ => 86_400,
    }
}

/// How long to wait before asking the CA for renewal information again: its
/// Retry-After, kept between one hour and one day.
pub fn ari_recheck(retry_after_secs: u64) -> i64 {
    (retry_after_secs as i64).clamp(3_600, 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn two_thirds_follows_the_certificates_own_lifetime() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for lifetime in [600, 6 * 86_400, 90 * 86_400, 397 * 86_400] {
            for _ in 0..200 {
                let t = two_thirds(1_000, 1_000 + lifetime, &mut rng);
                let base = 1_000 + lifetime * 2 / 3;
                assert!(t <= base && t >= base - lifetime / 30, "{lifetime}: {t}");
            }
        }
        // The jitter actually varies.
        let picks: std::collections::HashSet<i64> = (0..50)
            .map(|_| two_thirds(0, 90 * 86_400, &mut rng))
            .collect();
        assert!(picks.len() > 40);
    }

    #[test]
    fn window_picks_stay_inside_the_window() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for _ in 0..500 {
            let t = in_window(100, 200, &mut rng);
            assert!((100..200).contains(&t));
        }
        assert_eq!(in_window(300, 200, &mut rng), 300);
    }

    #[test]
    fn backoff_grows_then_stays_daily_and_never_exceeds_three_tries_an_hour() {
        let delays: Vec<i64> = (1..=6).map(backoff).collect();
        assert_eq!(delays, [60, 600, 6_000, 86_400, 86_400, 86_400]);
        // Attempts at 0, +1 min, +11 min, +111 min: any 60-minute window
        // holds at most three.
        let mut at = vec![0i64];
        for f in 1..=5 {
            at.push(at.last().unwrap() + backoff(f));
        }
        for start in &at {
            let n = at
                .iter()
                .filter(|t| **t >= *start && **t < start + 3_600)
                .count();
            assert!(n <= 3, "{at:?}");
        }
    }

    #[test]
    fn ari_recheck_is_clamped() {
        assert_eq!(ari_recheck(5), 3_600);
        assert_eq!(ari_recheck(21_600), 21_600);
        assert_eq!(ari_recheck(10 * 86_400), 86_400);
    }
}
