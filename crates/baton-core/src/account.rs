//! An account's money: a balance of credits, the entries that make it up, reservations held for
//! actions in flight, and the policy that decides whether one more action may start (a monthly cap,
//! auto-reload, overage). Pure: the store runs these decisions inside its transactions.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::Credits;
use crate::time::Timestamp;

/// What an entry of the account's ledger records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Grant,
    TopUp,
    AutoReload,
    Charge(ChargeKind),
}

/// What was charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeKind {
    Input,
    CachedInput,
    CacheWrite,
    Output,
    SandboxSeconds,
    Check,
    Review,
}

impl ChargeKind {
    pub const ALL: [ChargeKind; 7] = [
        ChargeKind::Input,
        ChargeKind::CachedInput,
        ChargeKind::CacheWrite,
        ChargeKind::Output,
        ChargeKind::SandboxSeconds,
        ChargeKind::Check,
        ChargeKind::Review,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChargeKind::Input => "input",
            ChargeKind::CachedInput => "cached_input",
            ChargeKind::CacheWrite => "cache_write",
            ChargeKind::Output => "output",
            ChargeKind::SandboxSeconds => "sandbox_seconds",
            ChargeKind::Check => "check",
            ChargeKind::Review => "review",
        }
    }
}

impl EntryKind {
    /// The inverse of `Display`, for the store.
    pub fn parse(text: &str) -> Option<EntryKind> {
        match text {
            "grant" => Some(EntryKind::Grant),
            "top_up" => Some(EntryKind::TopUp),
            "auto_reload" => Some(EntryKind::AutoReload),
            _ => {
                let kind = text.strip_prefix("charge:")?;
                ChargeKind::ALL.into_iter().find(|k| k.as_str() == kind).map(EntryKind::Charge)
            }
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryKind::Grant => f.write_str("grant"),
            EntryKind::TopUp => f.write_str("top_up"),
            EntryKind::AutoReload => f.write_str("auto_reload"),
            EntryKind::Charge(kind) => write!(f, "charge:{}", kind.as_str()),
        }
    }
}

/// A calendar month (UTC), the period of the monthly cap and of the auto-reload count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Month {
    pub year: i32,
    pub month: u32,
}

impl Month {
    /// The month `at` falls in.
    pub fn of(at: Timestamp) -> Month {
        let (year, month, _) = at.date();
        Month { year, month }
    }

    /// When the month begins.
    pub fn start(self) -> Timestamp {
        let (year, month) = (i64::from(self.year), i64::from(self.month));
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let year_of_era = y - era * 400;
        let mp = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * mp + 2) / 5;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        Timestamp((era * 146_097 + day_of_era - 719_468) * 86_400_000)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// One charge: what, and how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub kind: ChargeKind,
    pub amount: Credits,
}

/// The total of some charges.
pub fn total(charges: &[Charge]) -> Credits {
    charges.iter().fold(Credits::ZERO, |sum, charge| add(sum, charge.amount))
}

/// What work other than model calls costs: each second a command or a check runs in a sandbox,
/// and each check run. Zero by default: a self-hosted machine costs what it costs anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rates {
    pub sandbox_second: Credits,
    pub check: Credits,
}

impl Rates {
    /// The charges for `seconds` of sandbox time and `checks` check runs; kinds that cost nothing
    /// are left out.
    pub fn charges(&self, seconds: u64, checks: u64) -> Vec<Charge> {
        let times = |rate: Credits, n: u64| Credits::from_micros(rate.micros().saturating_mul(n as i64));
        [
            Charge { kind: ChargeKind::SandboxSeconds, amount: times(self.sandbox_second, seconds) },
            Charge { kind: ChargeKind::Check, amount: times(self.check, checks) },
        ]
        .into_iter()
        .filter(|charge| charge.amount > Credits::ZERO)
        .collect()
    }
}

/// A line of the account's ledger. Credits are positive, charges negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub at: Timestamp,
    pub kind: EntryKind,
    pub amount: Credits,
    /// The task a charge is for.
    pub task: Option<String>,
    /// The reservation a charge settles, naming the step and the action: `step 12 model call #345`
    /// (`#` the journal position of its intent), `check `tests` #400`.
    pub key: Option<String>,
    pub note: String,
}

/// Refill the balance to `target` when what is available falls below `threshold`, at most
/// `max_per_month` times a month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoReload {
    pub threshold: Credits,
    pub target: Credits,
    pub max_per_month: u32,
}

/// The rules an account's spending follows. The default tracks spending without limiting it: no
/// cap, no reload, overage on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// A hard ceiling on a month's spend: no action starts that could cross it.
    pub monthly_cap: Option<Credits>,
    pub auto_reload: Option<AutoReload>,
    /// Whether spending may go on once the balance is spent (billed afterwards). Off: work stops
    /// when the credits are spent.
    pub overage: bool,
}

impl Policy {
    /// Why this policy cannot be kept, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if let Some(cap) = self.monthly_cap
            && cap <= Credits::ZERO
        {
            return Err(format!("a monthly cap must be more than zero credits, not {cap}"));
        }
        if let Some(reload) = self.auto_reload {
            if reload.threshold < Credits::ZERO {
                return Err(format!("an auto-reload threshold cannot be negative ({})", reload.threshold));
            }
            if reload.target <= reload.threshold {
                return Err(format!(
                    "the auto-reload target ({}) must be above its threshold ({})",
                    reload.target, reload.threshold
                ));
            }
        }
        Ok(())
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { monthly_cap: None, auto_reload: None, overage: true }
    }
}

/// An account's position, as its entries and open reservations give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub policy: Policy,
    /// The sum of every entry.
    pub balance: Credits,
    /// Held by reservations not yet settled.
    pub reserved: Credits,
    pub month: Month,
    /// Charges in `month`.
    pub spent_this_month: Credits,
    /// Auto-reloads in `month`.
    pub reloads_this_month: u32,
}

/// Why an action may not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error(
        "the monthly cap of {cap} credits would be crossed: {spent} spent in {month} and {reserved} held by actions in flight, and this needs {needed}"
    )]
    MonthlyCap { cap: Credits, month: Month, spent: Credits, reserved: Credits, needed: Credits },
    #[error("the account's credits are spent: {available} available, this needs {needed} (overage is off)")]
    NoCredits { available: Credits, needed: Credits },
    #[error(
        "the task's budget of {limit} credits would be crossed: {spent} spent, {reserved} held, this needs {needed}"
    )]
    TaskBudget { limit: Credits, spent: Credits, reserved: Credits, needed: Credits },
    #[error("{overrun}; the task pauses so its limits are checked again ({spent} spent in all)")]
    Overrun { overrun: crate::Overrun, spent: Credits },
}

pub(crate) fn add(a: Credits, b: Credits) -> Credits {
    Credits::from_micros(a.micros().saturating_add(b.micros()))
}

pub(crate) fn sub(a: Credits, b: Credits) -> Credits {
    Credits::from_micros(a.micros().saturating_sub(b.micros()))
}

impl Position {
    /// An empty account in `month`.
    pub fn new(policy: Policy, month: Month) -> Position {
        Position {
            policy,
            balance: Credits::ZERO,
            reserved: Credits::ZERO,
            month,
            spent_this_month: Credits::ZERO,
            reloads_this_month: 0,
        }
    }

    /// Why the account's budget is low now that a charge moved it from `before` to `self`, if
    /// this charge is what made it so: the month's spend passed 80% of the monthly cap, or the
    /// balance went below zero (spending on overage). Each is told once, when it is crossed.
    pub fn low_since(&self, before: &Position) -> Option<String> {
        let spent_before = if before.month == self.month { before.spent_this_month } else { Credits::ZERO };
        if let Some(cap) = self.policy.monthly_cap {
            let mark = Credits::from_micros(cap.micros() / 5 * 4);
            if spent_before < mark && self.spent_this_month >= mark {
                return Some(format!(
                    "{} credits spent in {}: past 80% of the monthly cap of {cap}",
                    self.spent_this_month, self.month
                ));
            }
        }
        if before.balance >= Credits::ZERO && self.balance < Credits::ZERO {
            return Some(format!("the balance is {}: spending on overage", self.balance));
        }
        None
    }

    /// The balance less what reservations hold.
    pub fn available(&self) -> Credits {
        sub(self.balance, self.reserved)
    }

    /// Whether a reservation of `needed` may be held at `at`, and the amount of the auto-reload
    /// that must come first, if any. The cap is checked before any reload: a month at its cap
    /// reloads nothing.
    pub fn admit(&self, at: Timestamp, needed: Credits) -> Result<Option<Credits>, Refusal> {
        let position = self.in_month(Month::of(at));
        if let Some(cap) = position.policy.monthly_cap
            && add(add(position.spent_this_month, position.reserved), needed) > cap
        {
            return Err(Refusal::MonthlyCap {
                cap,
                month: position.month,
                spent: position.spent_this_month,
                reserved: position.reserved,
                needed,
            });
        }
        let after = sub(position.available(), needed);
        let reload = match position.policy.auto_reload {
            Some(reload) if after < reload.threshold && position.reloads_this_month < reload.max_per_month => {
                Some(sub(reload.target, after)).filter(|amount| *amount > Credits::ZERO)
            }
            _ => None,
        };
        let available = add(position.available(), reload.unwrap_or(Credits::ZERO));
        if !position.policy.overage && available < needed {
            return Err(Refusal::NoCredits { available, needed });
        }
        Ok(reload)
    }

    /// The position as seen from `month`: a new month starts with nothing spent or reloaded.
    pub fn in_month(&self, month: Month) -> Position {
        if month == self.month {
            return *self;
        }
        Position { month, spent_this_month: Credits::ZERO, reloads_this_month: 0, ..*self }
    }

    /// Applies an entry written at `at`.
    pub fn apply(&mut self, at: Timestamp, kind: EntryKind, amount: Credits) {
        *self = self.in_month(Month::of(at).max(self.month));
        self.balance = add(self.balance, amount);
        let this_month = Month::of(at) == self.month;
        match kind {
            EntryKind::Charge(_) if this_month => self.spent_this_month = sub(self.spent_this_month, amount),
            EntryKind::AutoReload if this_month => self.reloads_this_month += 1,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn credits(n: i64) -> Credits {
        Credits::from_micros(n * 1_000_000)
    }

    #[test]
    fn months_follow_the_calendar() {
        let at = |ms: i64| Month::of(Timestamp(ms));
        assert_eq!(at(0), Month { year: 1970, month: 1 });
        // 2026-11-26T06:00:00Z and the first and last millisecond of 2024-02 (a leap year).
        assert_eq!(at(1_795_672_800_000), Month { year: 2026, month: 11 });
        assert_eq!(at(1_706_745_600_000), Month { year: 2024, month: 2 });
        assert_eq!(at(1_709_251_199_999), Month { year: 2024, month: 2 });
        assert_eq!(at(1_709_251_200_000), Month { year: 2024, month: 3 });
        assert_eq!(Month { year: 2024, month: 3 }.start(), Timestamp(1_709_251_200_000));
        assert_eq!(Month { year: 2024, month: 3 }.to_string(), "2024-03");
    }

    proptest! {
        #[test]
        fn a_month_starts_where_its_first_millisecond_is(ms in -10_000_000_000_000_i64..10_000_000_000_000) {
            let month = Month::of(Timestamp(ms));
            prop_assert!(month.start() <= Timestamp(ms));
            prop_assert_eq!(Month::of(month.start()), month);
            prop_assert_eq!(Month::of(Timestamp(month.start().0 - 1)) < month, true);
        }
    }

    #[test]
    fn a_budget_is_low_once_when_a_charge_passes_four_fifths_of_the_cap_or_zero() {
        let month = Month { year: 2026, month: 12 };
        let at = month.start();
        let policy = Policy { monthly_cap: Some(credits(10)), auto_reload: None, overage: true };
        let mut position = Position::new(policy, month);
        position.apply(at, EntryKind::TopUp, credits(9));
        let charge = |position: &mut Position, amount: i64| {
            let before = *position;
            position.apply(at, EntryKind::Charge(ChargeKind::Output), credits(-amount));
            position.low_since(&before)
        };
        assert_eq!(charge(&mut position, 7), None, "7 of 10");
        let low = charge(&mut position, 1).unwrap();
        assert_eq!(low, "8.00 credits spent in 2026-12: past 80% of the monthly cap of 10.00");
        assert_eq!(charge(&mut position, 1), None, "told once");
        assert_eq!(charge(&mut position, 1).as_deref(), Some("the balance is -1.00: spending on overage"));
        assert_eq!(charge(&mut position, 0), None);
    }

    #[test]
    fn the_cap_comes_before_reloads_and_overage_decides_at_zero() {
        let month = Month { year: 2026, month: 11 };
        let at = month.start();
        let reload = AutoReload { threshold: credits(5), target: credits(20), max_per_month: 1 };
        let policy = Policy { monthly_cap: Some(credits(30)), auto_reload: Some(reload), overage: false };
        let mut position = Position::new(policy, month);
        position.apply(at, EntryKind::TopUp, credits(10));
        assert_eq!(position.admit(at, credits(3)), Ok(None));
        // 10 - 6 = 4 < 5: reload to 20, i.e. 16 more.
        assert_eq!(position.admit(at, credits(6)), Ok(Some(credits(16))));
        position.apply(at, EntryKind::Charge(ChargeKind::Output), credits(-28));
        let refused = position.admit(at, credits(3)).unwrap_err();
        assert!(matches!(refused, Refusal::MonthlyCap { .. }), "{refused}");
        assert_eq!(
            refused.to_string(),
            "the monthly cap of 30.00 credits would be crossed: 28.00 spent in 2026-11 and 0.00 held by actions in flight, and this needs 3.00"
        );
        // Next month the cap is fresh; the balance (-18) is what it is, and overage is off.
        let next = Month { year: 2026, month: 12 }.start();
        assert!(matches!(position.admit(next, credits(1)), Ok(Some(_))));
        position.policy.auto_reload = None;
        assert!(matches!(position.admit(next, credits(1)), Err(Refusal::NoCredits { .. })));
        position.policy.overage = true;
        assert!(position.admit(next, credits(1)).is_ok());
    }
}
